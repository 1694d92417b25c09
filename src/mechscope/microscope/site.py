"""HTML pages of the Microscope, rendered from a results store, and their export as a self-contained static site.

This is the presentation layer only: it reads a store (``mechscope.store``) that a build step filled, and never
writes to it.

Store contract (what the pages read; anything absent is simply not shown):

* ``layers`` rows ``(model, layer, channels, settings)``: one per browsable layer.  ``channels`` is the number of
  units (``0..channels-1``); when it is ``None`` the units are the channels that have any row in ``figures``,
  ``examples`` or ``stats``.  ``settings`` may hold ``{"kind": "vision" | "heads" | "toy", ...}`` and
  ``"thumbnail"``: the figure kind shown in the layer grid (default ``"featvis"``).
* ``figures`` rows ``(model, layer, channel, kind, png, settings)``; ``channel = -1`` is a layer-wide figure
  (shown on the layer page).  Kinds with a dedicated caption are listed in ``CAPTIONS`` (shown in that order,
  other kinds after them by name, captioned by their kind): ``"featvis"`` (the unit's feature visualization, its
  thumbnail in the layer grid), ``"featvis_diversity"``, ``"featvis_negative"``, ``"histogram"``, ``"tuning"``,
  ``"attribution"``, ``"upstream"`` / ``"downstream"`` (weight heatmaps), the head kinds ``"attention"``,
  ``"head_scores"``, ``"composition"``, ``"qk_pairs"``, ``"ov_pairs"`` and the toy-model kinds ``"geometry"``,
  ``"gram"``, ``"norms"``.  ``settings`` (a JSON object) may hold:

  - ``"score"`` (float) and ``"score_name"`` (str): shown beside the caption; the thumbnail figure's score sorts
    the layer grid, and every score name of a layer's figures is a sort button there;
  - ``"caption"`` (str): replaces the kind's caption; ``"note"`` (str): a line of text under it;
  - ``"units"``: circuit links ``[{"unit": "mixed3a:12", "weight": 0.8}, ...]`` (``"layer:channel"`` names in
    the same model; a link to a unit the store does not have is shown as plain text);
  - ``"table"``: ``{"columns": [str, ...], "rows": [[cell, ...], ...]}``, shown as a table (cells as text).

  A figure with no PNG is still shown when it has links, a table or a note.
* ``examples`` rows ``(model, layer, channel, which, rank, dataset_index, value, x, y, png)`` with ``which`` in
  ``"top"`` / ``"bottom"``.
* ``stats`` rows ``(model, layer, channel, count, mean, std, fraction_firing, min, max, quantiles, histogram)``.

Site layout (every URL relative to the site root; every link in a page relative to that page, so the site works
from ``file://`` and any static host)::

    index.html                          the models and their layers, with a client-side unit search
    <model>/<layer>/index.html          a layer: the grid of its units' feature visualizations
    <model>/<layer>/<channel>.html      a unit: all its figures, examples, statistics and circuit links
    png/ab/<sha256>.png                 the store's PNGs, under the same content-addressed names

Names become path segments through ``slug``: letters, digits, ``-`` and ``.`` are kept, every other byte of the
UTF-8 name is written ``_XX`` (``_`` itself included, a leading ``.`` too), so slugs are injective, URL-safe
without further quoting, and never ``..``; ``png`` / ``index.html`` are escaped so that they cannot clash with the
site's own files.  All text goes through Jinja2 with autoescaping.

Example::

    >>> unit_url("inceptionv1", "mixed3b", 379)
    'inceptionv1/mixed3b/379.html'
    >>> slug("<b>x</b>"), slug("blocks.0_attn"), slug("..")
    ('_3Cb_3Ex_3C_2Fb_3E', 'blocks.0_5Fattn', '_2E.')
    >>> relative_url(unit_url("m", "conv1", 3), unit_url("m", "conv2", 7))
    '../../m/conv2/7.html'
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jinja2

from mechscope.artefacts import atomic_write_bytes
from mechscope.errors import MechscopeError
from mechscope.store import Store, open_store, read_png, read_rows, unit_channels

HTML = "text/html; charset=utf-8"
PNG = "image/png"

_SAFE = frozenset(string.ascii_letters + string.digits + "-.")
_RESERVED = frozenset({"png", "index.html"})  # top-level names of the site itself
_PNG_PATH = re.compile(r"png/([0-9a-f]{2})/([0-9a-f]{64})\.png")
_UNIT_FILE = re.compile(r"(0|[1-9][0-9]*)\.html")

CAPTIONS: dict[str, str] = {
    "featvis": "Feature visualization",
    "featvis_diversity": "Diversity: different images that all excite the unit",
    "featvis_negative": "Negative feature visualization: what suppresses the unit",
    "attention": "Attention pattern on sample text",
    "head_scores": "Detector scores (previous-token, induction, duplicate-token)",
    "composition": "Composition with heads of earlier layers",
    "qk_pairs": "Top QK token pairs (query ← key)",
    "ov_pairs": "Top OV token pairs (source → logit)",
    "geometry": "Feature geometry in the hidden space",
    "gram": "WᵀW: how features overlap",
    "norms": "Feature norms and superposition",
    "log_prob": "Distribution of activations over the dataset (log probability density)",
    "quilt": "Quilt: dataset examples ordered by how much they activate the unit",
    "histogram": "Histogram of activations",
    "tuning": "Tuning curve",
    "attribution": "Attribution of the top dataset example",
    "upstream": "Upstream: the units that feed this one (weights)",
    "downstream": "Downstream: the units this one feeds (weights)",
}
"""Caption of each known figure kind; figures are shown in this order, other kinds after them by name."""


# ---------------------------------------------------------------------------------------------------- URLs

def slug(name: str) -> str:
    """A file- and URL-safe, injective path segment for ``name`` (see the module docstring)."""
    out = []
    for i, ch in enumerate(str(name)):
        if ch in _SAFE and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.extend(f"_{b:02X}" for b in ch.encode("utf-8"))
    s = "".join(out)
    if not s:
        return "_"  # not a valid ``_XX``, so no other name gives it
    if s.lower() in _RESERVED:
        s = f"_{ord(s[0]):02X}{s[1:]}"
    return s


def index_url() -> str:
    """The site's front page, relative to the site root."""
    return "index.html"


def layer_url(model: str, layer: str) -> str:
    """The page of a layer, relative to the site root."""
    return f"{slug(model)}/{slug(layer)}/index.html"


def unit_url(model: str, layer: str, channel: int) -> str:
    """The page of one unit, relative to the site root (``channel >= 0``; layer-wide figures have no page)."""
    if isinstance(channel, bool) or not isinstance(channel, int) or channel < 0:
        raise MechscopeError(f"a unit page needs a channel >= 0, not {channel!r}")
    return f"{slug(model)}/{slug(layer)}/{channel}.html"


def png_url(rel: str) -> str:
    """The site URL of a store PNG path ``png/ab/<sha256>.png`` (the same path); other paths are refused."""
    if not _is_png_path(rel):
        raise MechscopeError(f"{rel!r} is not a store PNG path png/ab/<sha256>.png")
    return rel


def relative_url(page: str, target: str) -> str:
    """``target`` (relative to the site root) as a link from the page at ``page`` (relative to the site root)."""
    return "../" * page.count("/") + target


def _is_png_path(rel: Any) -> bool:
    m = _PNG_PATH.fullmatch(rel) if isinstance(rel, str) else None
    return bool(m) and m.group(2).startswith(m.group(1))


# ---------------------------------------------------------------------------------------------------- store view

@dataclass
class _View:
    """What the pages need from one store, read once: its layers and (lazily) their units."""

    store: Store
    layers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _units: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, store: Store) -> _View:
        view = cls(store)
        for row in read_rows(store, "layers"):
            view.layers[(row["model"], row["layer"])] = row
        return view

    def units(self, model: str, layer: str) -> list[int]:
        key = (model, layer)
        if key not in self.layers:
            return []
        if key not in self._units:
            n = self.layers[key].get("channels")
            if isinstance(n, int) and n > 0:
                self._units[key] = list(range(n))
            else:
                self._units[key] = unit_channels(self.store, model, layer)
        return self._units[key]

    def has_unit(self, model: str, layer: str, channel: int) -> bool:
        units = self.units(model, layer)
        if units and units[-1] == len(units) - 1:  # a range
            return 0 <= channel < len(units)
        return channel in units

    def kind(self, model: str, layer: str) -> str:
        settings = self.layers.get((model, layer), {}).get("settings")
        return str(settings.get("kind", "")) if isinstance(settings, dict) else ""

    def png_ok(self, rel: Any) -> bool:
        """Whether ``rel`` is a store PNG path whose file exists (else the page shows no image)."""
        return _is_png_path(rel) and (self.store.root / rel).is_file()

    def require_layer(self, model: str, layer: str) -> None:
        if (model, layer) not in self.layers:
            known = ", ".join(f"{m}/{name}" for m, name in self.layers) or "none"
            raise MechscopeError(f"the store {str(self.store.root)!r} has no layer {model}/{layer}; layers: {known}")


def _number(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return "" if x is None else str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.4g}" if math.isfinite(x) else str(x)
    text = json.dumps(x) if isinstance(x, (list, dict)) else str(x)
    return text if len(text) <= 200 else text[:199] + "…"


def _stat(name: str, value: Any) -> str:
    """A statistic as text; quantiles as ``1%: v · 50%: v · ...``."""
    if name == "quantiles" and isinstance(value, dict):
        parts = []
        for q, v in value.items():
            try:
                parts.append(f"{100 * float(q):g}%: {_number(v)}")
            except (TypeError, ValueError):
                parts.append(f"{q}: {_number(v)}")
        return " · ".join(parts)
    return _number(value)


def _score(settings: Any) -> tuple[float | None, str]:
    if not isinstance(settings, dict):
        return None, ""
    score = settings.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        return None, ""
    return float(score), str(settings.get("score_name") or "score")


def _parse_unit(name: Any) -> tuple[str, int] | None:
    """``"mixed3a:12"`` -> ``("mixed3a", 12)``; ``None`` when not of that form."""
    if not isinstance(name, str) or ":" not in name:
        return None
    layer, _, ch = name.rpartition(":")
    return (layer, int(ch)) if re.fullmatch(r"0|[1-9][0-9]*", ch) else None







@functools.cache
def _env() -> jinja2.Environment:
    """The page templates (``templates/``, package data): ``.html`` autoescaped, CSS and JS included as they are."""
    return jinja2.Environment(loader=jinja2.PackageLoader("mechscope.microscope", "templates"),
                              autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


# ---------------------------------------------------------------------------------------------------- pages

def _noun(kind: str) -> str:
    return {"heads": "head", "toy": "instance"}.get(kind, "unit")


def _figure_order(kind: str) -> tuple[int, str]:
    order = list(CAPTIONS)
    return (order.index(kind), "") if kind in order else (len(order), kind)


def _index(view: _View) -> str:
    page = index_url()
    models: dict[str, list[dict[str, Any]]] = {}
    search = []
    for (model, layer), row in view.layers.items():
        href = relative_url(page, layer_url(model, layer))
        n = row.get("channels")
        count: Any = n if isinstance(n, int) and n > 0 else len(view.units(model, layer))
        models.setdefault(model, []).append({"name": layer, "href": href, "kind": view.kind(model, layer),
                                             "count": count})
        units = view.units(model, layer)
        ranged = not units or units[-1] == len(units) - 1
        search.append([model, layer, href[: -len("index.html")], len(units) if ranged else units])
    example = next((f"{layer}:0" for (_, layer) in view.layers), "mixed3b:379")
    return _env().get_template("index.html").render(models=list(models.items()), search=search, example=example)


def _layer(view: _View, model: str, layer: str, sort: str) -> str:
    if sort not in ("score", "channel"):
        raise MechscopeError(f"sort must be 'score' or 'channel', not {sort!r}")
    view.require_layer(model, layer)
    page = layer_url(model, layer)
    settings = view.layers[(model, layer)].get("settings")
    thumbnail = str(settings.get("thumbnail") or "featvis") if isinstance(settings, dict) else "featvis"
    thumbs: dict[int, dict[str, Any]] = {}
    scores: dict[int, dict[str, float]] = {}  # every score a unit's figures carry, by name: the grid's sort keys
    names: dict[str, tuple[int, str]] = {}
    figures = []
    for row in read_rows(view.store, "figures", model=model, layer=layer):
        if row["channel"] == -1:
            shown = _figure(view, page, model, row)
            if shown is not None:
                figures.append(shown)
            continue
        if row["kind"] == thumbnail:
            thumbs[row["channel"]] = row
        score, name = _score(row["settings"])
        if score is not None:
            scores.setdefault(row["channel"], {})[name] = score
            names.setdefault(name, (0 if row["kind"] == thumbnail else 1, name))
    figures.sort(key=lambda f: _figure_order(f["kind"]))
    sorts = sorted(names, key=lambda n: names[n])  # the thumbnail's score first
    units = []
    for ch in view.units(model, layer):
        row = thumbs.get(ch)
        score, score_name = _score(row["settings"]) if row else (None, "")
        src = relative_url(page, png_url(row["png"])) if row and view.png_ok(row["png"]) else None
        mine = scores.get(ch, {})
        units.append({"channel": ch, "href": relative_url(page, unit_url(model, layer, ch)), "src": src,
                      "score": score, "score_name": score_name, "score_text": _number(score),
                      "sorts": [repr(mine[n]) if n in mine else "" for n in sorts]})
    if sort == "score":
        units.sort(key=lambda u: (u["score"] is None, -(u["score"] or 0.0), u["channel"]))
    kind = view.kind(model, layer)
    return _env().get_template("layer.html").render(
        model=model, layer=layer, kind=kind, noun=_noun(kind), units=units, figures=figures, sorts=sorts,
        empty=sum(u["src"] is None for u in units) if any(u["src"] for u in units) else 0,
        home=relative_url(page, index_url()))


def _table(settings: Any) -> dict[str, list[Any]] | None:
    table = settings.get("table") if isinstance(settings, dict) else None
    if not isinstance(table, dict) or not isinstance(table.get("rows"), list):
        return None
    columns = table.get("columns")
    rows = [[_number(v) for v in r] if isinstance(r, list) else [_number(r)] for r in table["rows"]]
    return {"columns": [str(c) for c in columns] if isinstance(columns, list) else [], "rows": rows}


def _figure(view: _View, page: str, model: str, row: dict[str, Any]) -> dict[str, Any] | None:
    """What a page shows of one ``figures`` row, or ``None`` when it has nothing to show."""
    settings = row["settings"] if isinstance(row["settings"], dict) else {}
    links = _links(view, page, model, settings)
    table = _table(settings)
    note = str(settings["note"]) if isinstance(settings.get("note"), str) else ""
    src = relative_url(page, png_url(row["png"])) if view.png_ok(row["png"]) else None
    if src is None and not links and table is None and not note:
        return None
    caption = settings.get("caption")
    score, score_name = _score(settings)
    return {"kind": slug(row["kind"]), "src": src, "note": note, "table": table, "links": links,
            "caption": caption if isinstance(caption, str) else CAPTIONS.get(row["kind"], row["kind"]),
            "score": score, "score_name": score_name, "score_text": _number(score)}


def _links(view: _View, page: str, model: str, settings: Any) -> list[dict[str, Any]]:
    entries = settings.get("units") if isinstance(settings, dict) else None
    links = []
    for entry in entries if isinstance(entries, list) else []:
        name, weight = (entry.get("unit"), entry.get("weight")) if isinstance(entry, dict) else (entry, None)
        if name is None:
            continue
        parsed = _parse_unit(name)
        href = (relative_url(page, unit_url(model, *parsed))
                if parsed and view.has_unit(model, *parsed) else None)
        links.append({"name": str(name), "href": href, "weight": _number(weight)})
    return links


def _unit(view: _View, model: str, layer: str, channel: int) -> str:
    view.require_layer(model, layer)
    if isinstance(channel, bool) or not isinstance(channel, int) or not view.has_unit(model, layer, channel):
        units = view.units(model, layer)
        span = f"0..{units[-1]}" if units else "none"
        raise MechscopeError(f"layer {model}/{layer} has no unit {channel!r}; units: {span}")
    page = unit_url(model, layer, channel)
    store = view.store
    figures = []
    for row in sorted(read_rows(store, "figures", model=model, layer=layer, channel=channel),
                      key=lambda r: _figure_order(r["kind"])):
        shown = _figure(view, page, model, row)
        if shown is not None:
            figures.append(shown)
    examples: dict[str, list[dict[str, Any]]] = {}
    for row in read_rows(store, "examples", model=model, layer=layer, channel=channel):
        position = f"({row['x']}, {row['y']})" if row["x"] is not None and row["y"] is not None else ""
        examples.setdefault(str(row["which"]), []).append({
            "rank": row["rank"], "value": _number(row["value"]), "dataset_index": _number(row["dataset_index"]),
            "position": position,
            "src": relative_url(page, png_url(row["png"])) if view.png_ok(row["png"]) else None})
    ordered = sorted(examples.items(), key=lambda kv: ({"top": 0, "bottom": 1}.get(kv[0], 2), kv[0]))
    stats = []
    for row in read_rows(store, "stats", model=model, layer=layer, channel=channel)[:1]:
        stats = [(name.replace("_", " "), _stat(name, value)) for name, value in row.items()
                 if name not in ("model", "layer", "channel", "histogram") and value is not None]
    units = view.units(model, layer)
    i = units.index(channel)
    prev = relative_url(page, unit_url(model, layer, units[i - 1])) if i > 0 else None
    nxt = relative_url(page, unit_url(model, layer, units[i + 1])) if i + 1 < len(units) else None
    kind = view.kind(model, layer)
    return _env().get_template("unit.html").render(
        model=model, layer=layer, channel=channel, kind=kind, noun=_noun(kind), figures=figures,
        examples=ordered, stats=stats, prev=prev, next=nxt, home=relative_url(page, index_url()),
        layer_href=relative_url(page, layer_url(model, layer)))


def render_index(store: Store) -> str:
    """The front page: every model and layer of ``store``, and a search box (client-side) for ``layer:channel``."""
    return _index(_View.of(store))


def render_layer(store: Store, model: str, layer: str, *, sort: str = "score") -> str:
    """A layer's page: its layer-wide figures and the grid of its units' feature visualizations.

    ``sort="score"`` orders the grid by the featvis score (highest first, units without one last),
    ``sort="channel"`` by channel; the page can re-sort itself either way.
    """
    return _layer(_View.of(store), model, layer, sort)


def render_unit(store: Store, model: str, layer: str, channel: int) -> str:
    """A unit's page: its figures with captions, top/bottom examples, statistics and circuit links."""
    return _unit(_View.of(store), model, layer, channel)


# ---------------------------------------------------------------------------------------------------- serving

def page_for_path(store: Store, path: str) -> tuple[bytes, str] | None:
    """What a server answers for the site path ``path`` -> ``(body, content type)``, or ``None`` (404).

    ``path`` is the URL path relative to the site root, i.e. without its leading ``/`` (``""`` is the index); a
    query or fragment is ignored; it is percent-decoded once, then any ``..`` or ``.`` segment, a leading ``/``,
    a backslash, a NUL or a path that is not a page of the site (or a ``png/ab/<sha256>.png`` file of the store)
    gives ``None``.
    """
    if not isinstance(path, str):
        return None
    raw = path.split("#", 1)[0].split("?", 1)[0]
    try:
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        return None
    for p in (raw, decoded):
        if "\\" in p or "\x00" in p or p.startswith("/") or ":" in p.split("/", 1)[0]:
            return None
        if any(seg in ("..", ".") for seg in p.split("/")):
            return None
    if decoded in ("", index_url()):
        return render_index(store).encode("utf-8"), HTML
    if _is_png_path(decoded):
        if not (store.root / decoded).is_file():
            return None
        try:
            return read_png(store, decoded), PNG
        except MechscopeError:
            return None
    parts = decoded.split("/")
    if len(parts) != 3:
        return None
    view = _View.of(store)
    names = {(slug(m), slug(layer)): (m, layer) for m, layer in view.layers}
    key = names.get((parts[0], parts[1]))
    if key is None:
        return None
    if parts[2] in ("", "index.html"):
        return _layer(view, *key, "score").encode("utf-8"), HTML
    m = _UNIT_FILE.fullmatch(parts[2])
    if m and view.has_unit(*key, int(m.group(1))):
        return _unit(view, *key, int(m.group(1))).encode("utf-8"), HTML
    return None


# ---------------------------------------------------------------------------------------------------- export

def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _referenced_pngs(view: _View) -> Iterable[str]:
    seen: set[str] = set()
    for model, layer in view.layers:
        for table in ("figures", "examples"):
            for row in read_rows(view.store, table, model=model, layer=layer):
                rel = row["png"]
                if rel not in seen and view.png_ok(rel):
                    seen.add(rel)
                    yield rel


def export(store_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, int]:
    """Write the whole site of the store in ``store_dir`` into ``out_dir`` -> counts of what was written.

    Every page and every PNG a page shows go into ``out_dir`` (each file written atomically), so the folder opens
    from ``file://`` or any static host.  Files already in ``out_dir`` are overwritten, others left alone; a PNG
    already there (same name, so same content, same size) is not copied again.  Refuses a missing store and an
    ``out_dir`` that is the store or inside it.  Returns ``{"layers", "units", "pages", "pngs"}``.
    """
    store_path, out = Path(store_dir), Path(out_dir)
    if not store_path.is_dir():
        raise MechscopeError(f"no store at {str(store_path)!r}: the folder does not exist; build the store first")
    if _inside(out.resolve(), store_path.resolve()):
        raise MechscopeError(f"the export folder {str(out)!r} is the store {str(store_path)!r} or inside it; "
                             "export to a folder outside the store")
    if out.exists() and not out.is_dir():
        raise MechscopeError(f"the export folder {str(out)!r} exists and is not a folder")
    with open_store(store_path, create=False) as store:
        view = _View.of(store)
        folded: dict[tuple[str, str], tuple[str, str]] = {}
        for model, layer in view.layers:  # case-insensitive file systems would merge such folders
            key = (slug(model).lower(), slug(layer).lower())
            if key in folded:
                raise MechscopeError(f"layers {folded[key]} and {(model, layer)} differ only by letter case; their "
                                     "folders would clash on case-insensitive file systems; rename one")
            folded[key] = (model, layer)
        counts = {"layers": 0, "units": 0, "pages": 0, "pngs": 0}
        atomic_write_bytes(out / index_url(), _index(view).encode("utf-8"))
        atomic_write_bytes(out / ".nojekyll", b"")  # GitHub Pages: serve folders starting with "_" too
        counts["pages"] += 1
        for model, layer in view.layers:
            atomic_write_bytes(out / layer_url(model, layer), _layer(view, model, layer, "score").encode("utf-8"))
            counts["layers"] += 1
            counts["pages"] += 1
            for ch in view.units(model, layer):
                atomic_write_bytes(out / unit_url(model, layer, ch), _unit(view, model, layer, ch).encode("utf-8"))
                counts["units"] += 1
                counts["pages"] += 1
        for rel in _referenced_pngs(view):
            target = out / rel
            if not (target.is_file() and target.stat().st_size == (store.root / rel).stat().st_size):
                atomic_write_bytes(target, read_png(store, rel))
            counts["pngs"] += 1
    return counts


__all__ = ["CAPTIONS", "slug", "index_url", "layer_url", "unit_url", "png_url", "relative_url", "render_index",
           "render_layer", "render_unit", "page_for_path", "export"]
