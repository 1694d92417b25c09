"""HTML pages of the Microscope, rendered from a results store, and their export as a self-contained static site.

This is the presentation layer only: it reads a store (``mechscope.store``) that a build step filled, and never
writes to it.

Store contract (what the pages read; anything absent is simply not shown):

* ``layers`` rows ``(model, layer, channels, settings)``: one per browsable layer.  ``channels`` is the number of
  units (``0..channels-1``); when it is ``None`` the units are the channels that have any row in ``figures``,
  ``examples`` or ``stats``.  ``settings`` may hold ``{"kind": "vision" | "heads" | "toy", ...}`` and
  ``"thumbnail"``: the figure kind shown in the layer grid (default ``"featvis"``).
* ``figures`` rows ``(model, layer, channel, kind, png, settings)``; ``channel = -1`` is a layer-wide figure
  (shown on the layer page, below the grid: a layer page leads with its units' pictures).  The kinds are declared in ``mechscope.microscope.kinds`` (captions, display order:
  captioned kinds in that order, other kinds after them by name, captioned by their kind): ``"featvis"`` (the
  unit's feature visualization, its thumbnail in the layer grid), ``"featvis_diversity"``, ``"featvis_negative"``,
  the dataset kinds ``"log_prob"``, ``"quilt"``, ``"histogram"``, then ``"tuning"``, ``"attribution"``,
  ``"upstream"`` / ``"downstream"`` (weight heatmaps), ``"ablation"`` (feature use), ``"partner"`` (universality),
  ``"polysemanticity"`` (a unit's top-k label entropy, no PNG) and the layer-wide ``"polysemantic_units"``, the
  multimodal kinds ``"modality_table"`` (a thumbnail kind), ``"text_side"`` (no PNG), ``"faceted"``,
  ``"typographic"`` and the layer-wide ``"multimodal_units"``, the head kinds ``"attention"``, ``"head_scores"``,
  ``"composition"``, ``"qk_pairs"``, ``"ov_pairs"``, the layer-wide ``"attention_view"`` (every head's pattern
  on the sample text, ``microscope.attention_view``: shown on the layer page and on each head's page with that
  head selected, as tokens that a hover or click tints by attention), the MLP neuron and dictionary latent kinds
  (``microscope.features``, no PNGs: ``microscope.feature_view``) ``"top_contexts"`` (a thumbnail kind; tokens
  tinted by the unit's activation, the peak outlined), ``"logit_effects"``, ``"firing_density"`` and
  ``"activation_histogram"`` (bars drawn with CSS), ``"decoder_neurons"``, ``"latents_writing"``,
  ``"latents_reading"`` (links) and the layer-wide ``"feature_list"`` (the layer page then lists every unit in one
  line with a search box instead of the grid), and the toy-model kinds ``"geometry"``, ``"gram"``,
  ``"norms"``, ``"metrics"``, ``"summary"`` (the last two carry their own caption).  ``settings`` (a JSON object)
  may hold:

  - ``"score"`` (float) and ``"score_name"`` (str): shown beside the caption; the thumbnail figure's score sorts
    the layer grid, and every score name of a layer's figures is a sort button there;
  - ``"caption"`` (str): replaces the kind's caption; ``"note"`` (str): a line of text under it;
  - ``"units"``: circuit links ``[{"unit": "mixed3a:12", "weight": 0.8}, ...]`` (``"layer:channel"`` names in
    the same model, or in the model an entry's ``"model"`` names; a link to a unit the store does not have is
    shown as plain text);
  - ``"table"``: ``{"columns": [str, ...], "rows": [[cell, ...], ...]}``, shown as a table (cells as text).
  - ``"windows"`` (with ``"scale"``), ``"bars"``, ``"entries"``: a unit's top contexts, a bar chart, a layer's list
    of units (``microscope.feature_view``, which validates them; anything malformed is not shown).

  A figure with no PNG is still shown when it has links, a table or a note.
* ``examples`` rows ``(model, layer, channel, which, rank, dataset_index, value, x, y, png)`` with ``which`` in
  ``"top"`` / ``"bottom"``.
* ``stats`` rows ``(model, layer, channel, count, mean, std, fraction_firing, min, max, quantiles, histogram)``.

Site layout and names: ``mechscope.microscope.urls``.  All text goes through Jinja2 with autoescaping (the
templates are package files in ``templates/``).

Example::

    >>> import tempfile
    >>> from mechscope.store import open_store
    >>> with open_store(tempfile.mkdtemp()) as store:
    ...     "This store has no layers yet" in render_index(store)
    True
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jinja2

from mechscope.artefacts import atomic_write_bytes
from mechscope.errors import MechscopeError
from mechscope.microscope.attention_view import page_data
from mechscope.microscope.feature_view import bars_data, contexts_data, list_data
from mechscope.microscope.kinds import ATTENTION_VIEW, CAPTIONS, FEATURE_LIST, FEATVIS, caption, figure_order, noun
from mechscope.microscope.urls import (index_url, is_png_path, layer_url, png_url, relative_url, slug,
                                       unit_url)
from mechscope.microscope.view import StoreView, link_target, number_text, score_of, stat_text
from mechscope.store import Store, open_store, read_png, read_rows
from mechscope.units import search_grammar

HTML = "text/html; charset=utf-8"
PNG = "image/png"

TILE_PX = 128
"""Width and height (CSS pixels) of a tile's picture in a layer's grid and of a layer's picture on the index: the
pages give every such ``img`` these ``width``/``height`` attributes, so the layout does not move as the lazily
loaded pictures arrive."""

_UNIT_FILE = re.compile(r"(0|[1-9][0-9]*)\.html")


@functools.cache
def _env() -> jinja2.Environment:
    """The page templates (``templates/``, package data): ``.html`` autoescaped, CSS and JS included as they are."""
    return jinja2.Environment(loader=jinja2.PackageLoader("mechscope.microscope", "templates"),
                              autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


# ---------------------------------------------------------------------------------------------------- pages

def _index(view: StoreView) -> str:
    page = index_url()
    models: dict[str, list[dict[str, Any]]] = {}
    search = []
    for (model, layer), row in view.layers.items():
        href = relative_url(page, layer_url(model, layer))
        units = view.units(model, layer)
        n = row.get("channels")
        kind = view.kind(model, layer)
        picture = view.layer_picture(model, layer)
        models.setdefault(model, []).append({
            "name": layer, "href": href, "kind": kind, "noun": noun(kind),
            "count": n if isinstance(n, int) and n > 0 else len(units),
            "src": relative_url(page, png_url(picture[1])) if picture else None,
            "title": f"{layer}:{picture[0]}" if picture else "", "counts": view.counts(model, layer)})
        ranged = not units or units[-1] == len(units) - 1
        search.append([model, layer, href[: -len("index.html")], len(units) if ranged else units])
    example = next((f"{layer}:0" for (_, layer) in view.layers), "mixed3b:379")
    return _env().get_template("index.html").render(models=list(models.items()), search=search, example=example,
                                                        grammar=search_grammar(), tile=TILE_PX)


def _layer(view: StoreView, model: str, layer: str, sort: str) -> str:
    if sort not in ("score", "channel"):
        raise MechscopeError(f"sort must be 'score' or 'channel', not {sort!r}")
    view.require_layer(model, layer)
    page = layer_url(model, layer)
    thumbnail = view.thumbnail(model, layer)
    thumbs: dict[int, dict[str, Any]] = {}
    scores: dict[int, dict[str, float]] = {}  # every score a unit's figures carry, by name: the grid's sort keys
    names: dict[str, tuple[int, str]] = {}
    figures = []
    listing = _listing(view, page, model, layer)
    # a layer with a list of its units (MLP neurons, dictionary latents) shows it instead of a grid of pictures:
    # its units' rows are not read (a few thousand units' contexts would take a second to parse)
    rows = read_rows(view.store, "figures", model=model, layer=layer, **({"channel": -1} if listing else {}))
    for row in rows:
        if row["kind"] == FEATURE_LIST.name:
            continue
        if row["channel"] == -1:
            shown = _figure(view, page, model, row)
            if shown is not None:
                figures.append(shown)
            continue
        if row["kind"] == thumbnail:
            thumbs[row["channel"]] = row
        score, name = score_of(row["settings"])
        if score is not None:
            scores.setdefault(row["channel"], {})[name] = score
            names.setdefault(name, (0 if row["kind"] == thumbnail else 1, name))
    figures.sort(key=lambda f: figure_order(f["kind"]))
    sorts = sorted(names, key=lambda n: names[n])  # the thumbnail's score first
    units = []
    for ch in view.units(model, layer):
        row = thumbs.get(ch)
        score, score_name = score_of(row["settings"]) if row else (None, "")
        src = relative_url(page, png_url(row["png"])) if row and view.png_ok(row["png"]) else None
        mine = scores.get(ch, {})
        units.append({"channel": ch, "href": relative_url(page, unit_url(model, layer, ch)), "src": src,
                      "score": score, "score_name": score_name, "score_text": number_text(score),
                      "sorts": [repr(mine[n]) if n in mine else "" for n in sorts]})
    if sort == "score":
        units.sort(key=lambda u: (u["score"] is None, -(u["score"] or 0.0), u["channel"]))
    kind = view.kind(model, layer)
    return _env().get_template("layer.html").render(
        model=model, layer=layer, kind=kind, noun=noun(kind), units=units, figures=figures, sorts=sorts, listing=listing,
        empty=sum(u["src"] is None for u in units) if any(u["src"] for u in units) else 0,
        home=relative_url(page, index_url()), tile=TILE_PX)


def _listing(view: StoreView, page: str, model: str, layer: str) -> list[dict[str, Any]] | None:
    """The rows of a layer's ``feature_list`` figure (``None`` when it has none, or a malformed one)."""
    for row in read_rows(view.store, "figures", model=model, layer=layer, channel=-1, kind=FEATURE_LIST.name)[:1]:
        return list_data(row["settings"], lambda ch: relative_url(page, unit_url(model, layer, ch))
                         if view.has_unit(model, layer, ch) else None)
    return None


def _table(settings: Any) -> dict[str, list[Any]] | None:
    table = settings.get("table") if isinstance(settings, dict) else None
    if not isinstance(table, dict) or not isinstance(table.get("rows"), list):
        return None
    columns = table.get("columns")
    rows = [[number_text(v) for v in r] if isinstance(r, list) else [number_text(r)] for r in table["rows"]]
    return {"columns": [str(c) for c in columns] if isinstance(columns, list) else [], "rows": rows}


def _figure(view: StoreView, page: str, model: str, row: dict[str, Any], head: int = 0) -> dict[str, Any] | None:
    """What a page shows of one ``figures`` row, or ``None`` when it has nothing to show (``head``: the unit an
    attention view selects first)."""
    settings = row["settings"] if isinstance(row["settings"], dict) else {}
    links = _links(view, page, model, settings)
    table = _table(settings)
    note = str(settings["note"]) if isinstance(settings.get("note"), str) else ""
    src = relative_url(page, png_url(row["png"])) if view.png_ok(row["png"]) else None
    attention = None
    if row["kind"] == ATTENTION_VIEW.name:
        heads = [f"{row['layer']}:{h}" for h in view.units(model, row["layer"])]
        attention = page_data(settings, head, heads)
    contexts, bars = contexts_data(settings), bars_data(settings)
    if src is None and not links and table is None and not note and attention is None and not contexts and not bars:
        return None
    own = settings.get("caption")
    score, score_name = score_of(settings)
    kind = slug(row["kind"])
    return {"kind": kind, "vis": kind.startswith(FEATVIS.name), "src": src, "note": note, "table": table,
            "links": links, "caption": own if isinstance(own, str) else caption(row["kind"]), "view": attention,
            "contexts": contexts, "bars": bars,
            "score": score, "score_name": score_name, "score_text": number_text(score)}


def _links(view: StoreView, page: str, model: str, settings: Any) -> list[dict[str, Any]]:
    entries = settings.get("units") if isinstance(settings, dict) else None
    links = []
    for entry in entries if isinstance(entries, list) else []:
        name, weight = (entry.get("unit"), entry.get("weight")) if isinstance(entry, dict) else (entry, None)
        if name is None:
            continue
        other = entry.get("model", model) if isinstance(entry, dict) else model
        parsed = link_target(name, view.layer_names(other))
        href = (relative_url(page, unit_url(other, *parsed))
                if parsed and view.has_unit(other, *parsed) else None)
        label = str(name) if other == model else f"{other} {name}"
        links.append({"name": label, "href": href, "weight": number_text(weight)})
    return links


def _unit(view: StoreView, model: str, layer: str, channel: int) -> str:
    view.require_layer(model, layer)
    if isinstance(channel, bool) or not isinstance(channel, int) or not view.has_unit(model, layer, channel):
        units = view.units(model, layer)
        span = f"0..{units[-1]}" if units else "none"
        raise MechscopeError(f"layer {model}/{layer} has no unit {channel!r}; units: {span}")
    page = unit_url(model, layer, channel)
    store = view.store
    figures = []
    units = view.units(model, layer)
    i = units.index(channel)
    rows = read_rows(store, "figures", model=model, layer=layer, channel=channel)
    rows += read_rows(store, "figures", model=model, layer=layer, channel=-1, kind=ATTENTION_VIEW.name)
    for row in sorted(rows, key=lambda r: figure_order(r["kind"])):
        shown = _figure(view, page, model, row, head=i)
        if shown is not None:
            figures.append(shown)
    examples: dict[str, list[dict[str, Any]]] = {}
    for row in read_rows(store, "examples", model=model, layer=layer, channel=channel):
        position = f"({row['x']}, {row['y']})" if row["x"] is not None and row["y"] is not None else ""
        examples.setdefault(str(row["which"]), []).append({
            "rank": row["rank"], "value": number_text(row["value"]), "dataset_index": number_text(row["dataset_index"]),
            "position": position,
            "src": relative_url(page, png_url(row["png"])) if view.png_ok(row["png"]) else None})
    ordered = sorted(examples.items(), key=lambda kv: ({"top": 0, "bottom": 1}.get(kv[0], 2), kv[0]))
    stats = []
    for row in read_rows(store, "stats", model=model, layer=layer, channel=channel)[:1]:
        stats = [(name.replace("_", " "), stat_text(name, value)) for name, value in row.items()
                 if name not in ("model", "layer", "channel", "histogram") and value is not None]
    prev = relative_url(page, unit_url(model, layer, units[i - 1])) if i > 0 else None
    nxt = relative_url(page, unit_url(model, layer, units[i + 1])) if i + 1 < len(units) else None
    kind = view.kind(model, layer)
    return _env().get_template("unit.html").render(
        model=model, layer=layer, channel=channel, kind=kind, noun=noun(kind), figures=figures,
        examples=ordered, stats=stats, prev=prev, next=nxt, home=relative_url(page, index_url()),
        layer_href=relative_url(page, layer_url(model, layer)))


def render_index(store: Store) -> str:
    """The front page: every model and its layers, each with a picture (the thumbnail figure of its best-scoring
    unit; a blank when it has none), its number of units and how many have pictures, dataset examples and
    statistics; and a search box (client-side) for ``layer:channel``."""
    return _index(StoreView.of(store))


def render_layer(store: Store, model: str, layer: str, *, sort: str = "score") -> str:
    """A layer's page: the grid of its units' thumbnails (feature visualizations; one tile per unit, linking to its
    page; lazy-loaded, ``TILE_PX`` square), then its layer-wide figures.

    ``sort="score"`` orders the grid by the featvis score (highest first, units without one last),
    ``sort="channel"`` by channel; the page can re-sort itself either way.
    """
    return _layer(StoreView.of(store), model, layer, sort)


def render_unit(store: Store, model: str, layer: str, channel: int) -> str:
    """A unit's page: its figures with captions, top/bottom examples, statistics and circuit links."""
    return _unit(StoreView.of(store), model, layer, channel)


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
    if is_png_path(decoded):
        if not (store.root / decoded).is_file():
            return None
        try:
            return read_png(store, decoded), PNG
        except MechscopeError:
            return None
    parts = decoded.split("/")
    if len(parts) != 3:
        return None
    view = StoreView.of(store)
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


def _referenced_pngs(view: StoreView) -> Iterable[str]:
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
        view = StoreView.of(store)
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
