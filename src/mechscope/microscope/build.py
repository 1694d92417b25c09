"""Fill a results store with the Microscope's per-unit figures of an image model: feature visualizations and
circuit links (upstream / downstream weights).

``build`` writes, for every selected unit of every layer, the rows that ``mechscope.microscope.site`` reads (see
its store contract):

* a ``layers`` row per layer (``channels`` = the layer's width, ``settings = {"kind": "vision", "size": ...}``),
  unless the layer already has one (e.g. written by ``mechscope examples``);
* a ``featvis`` figure per unit: all the layer's selected units are optimized in one ``render_units`` batch;
  ``settings = {"steps", "size", "seed", "score", "score_name": "activation"}`` where ``score`` is the unit's
  activation on its own visualization (it sorts the layer grid);
* with ``negative=True`` (default), a ``featvis_negative`` figure per unit: the image that *minimizes* it, from the
  same ``render_units`` batch as the positives (``negative=True`` there), same ``settings`` keys (``score`` is the
  unit's activation on its negative image);
* with ``tuning=True`` (default), a ``tuning`` figure per unit of a layer with spatial maps (``[B, C, H, W]``;
  layers with ``[B, C]`` outputs get none): the polar plot of its radial tuning curve
  (``vision.tuning.radial_tuning_curve`` with 72 orientations, computed once per layer), ``settings =
  {"orientations": 72, "size", "preferred_deg", "curve_preference"}``;
* with ``upstream_layer={layer: earlier_layer}``, an ``upstream`` figure per unit: a heatmap of the expanded-weight
  kernels of its ``k`` strongest units of ``earlier_layer`` (``vision.circuits.upstream``), ``settings = {"units":
  [{"unit": "earlier:c", "weight": signed strength}, ...], "layer": earlier_layer, "k": k, "size": size}``; and on
  each of those upstream units a ``downstream`` figure (a bar chart of the weights) whose ``settings["units"]``
  lists the units that named it as upstream (merged with what the store already had), so the circuit can be
  walked both ways.

Dataset examples and activation statistics (and so ``histogram`` figures) are *not* made here: the ``mechscope examples`` / ``mechscope stats``
verbs (``vision.scan_store.save_scan``) fill the ``examples`` / ``stats`` tables of the same store.

Incremental: a unit whose ``featvis`` (``featvis_negative``) row has the same ``steps`` and ``size`` is not rendered
again, one whose ``tuning`` row has the same ``orientations`` and ``size`` is not recomputed, and one whose
``upstream`` row has the same ``layer``, ``k`` and ``size`` is not recomputed; a unit needing none counts as
skipped.  Each layer is written in one ``transaction`` (PNGs first, then rows), so an interruption leaves no
half-written layer.

Example::

    >>> import tempfile
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)).eval()
    >>> out = tempfile.mkdtemp()
    >>> build(net, "toy", ["0", "2"], out, featvis_steps=2, size=16, upstream_layer={"2": "0"}, k=1, progress=False)
    {'built': 4, 'skipped': 0}
    >>> build(net, "toy", ["0", "2"], out, featvis_steps=2, size=16, upstream_layer={"2": "0"}, k=1, progress=False)
    {'built': 0, 'skipped': 4}
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

from torch import nn
from tqdm.auto import tqdm

from mechscope.capture import layer_shapes
from mechscope.errors import MechscopeError
from mechscope.images import png_bytes
from mechscope.store import Store, open_store, put_png, put_rows, read_rows, transaction
from mechscope.units import validate
from mechscope.vision.circuits import upstream as upstream_units
from mechscope.vision.featvis.render import render_units
from mechscope.vision.tuning import radial_tuning_curve
from mechscope.vision.weights import kernel_heatmap

DEFAULT_SIZE = 128
TUNING_ORIENTATIONS = 72


def _fig_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def _new_figure(width: float, height: float) -> Any:
    """A matplotlib figure not registered with pyplot (nothing to close, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="tight")
    FigureCanvasAgg(fig)
    return fig


def _heatmap_png(rows: Sequence[Any], title: str) -> bytes:
    """Kernels of the upstream rows side by side, one shared colour scale."""
    import torch

    kernels = torch.stack([r.weights.detach().float().cpu() for r in rows])  # [k, h, w]
    c, kh, kw = kernels.shape
    fig = _new_figure(max(2.0, 0.35 * c * (kw + 1)), max(1.5, 0.35 * kh + 0.6))
    kernel_heatmap(kernels, fig.add_subplot(1, 1, 1), title=title)
    return _fig_png(fig)


def _bars_png(units: Sequence[dict[str, Any]], title: str) -> bytes:
    """Bar chart of the signed weights of ``units`` (red excitatory, blue inhibitory)."""
    names = [u["unit"] for u in units]
    weights = [float(u["weight"]) for u in units]
    fig = _new_figure(max(2.5, 0.5 * len(units) + 1), 2.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(units)), weights, color=["#b2182b" if w >= 0 else "#2166ac" for w in weights])
    ax.set_xticks(range(len(units)), names, rotation=45, ha="right", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_title(title, fontsize=8)
    return _fig_png(fig)


def _tuning_png(tuning: Any, channel: int) -> bytes:
    """Polar plot of one channel's radial tuning curve."""
    fig = _new_figure(3.2, 3.2)
    tuning.plot(channel, ax=fig.add_subplot(1, 1, 1, projection="polar"))
    return _fig_png(fig)


def _split(unit: str) -> tuple[str, int]:
    layer, _, channel = unit.rpartition(":")
    return layer, int(channel)


def _select(layer: str, width: int, units_per_layer: int | None,
            channels: dict[str, list[int]] | None) -> list[int]:
    if channels is not None and layer in channels:
        chosen = [int(c) for c in channels[layer]]
        bad = [c for c in chosen if not 0 <= c < width]
        if bad:
            raise MechscopeError(f"channels {bad} of layer {layer!r} are out of range (it has {width})")
        return sorted(set(chosen))
    if units_per_layer is not None and units_per_layer < 0:
        raise MechscopeError(f"units_per_layer must be >= 0, not {units_per_layer}")
    return list(range(width if units_per_layer is None else min(width, units_per_layer)))


def _same(settings: Any, want: dict[str, Any]) -> bool:
    return isinstance(settings, dict) and all(settings.get(key) == value for key, value in want.items())


def build(
    model: nn.Module,
    model_name: str,
    layers: list[str],
    out_dir: str | os.PathLike | Store,
    *,
    units_per_layer: int | None = None,
    channels: dict[str, list[int]] | None = None,
    featvis_steps: int = 128,
    size: int | None = None,
    upstream_layer: dict[str, str] | None = None,
    k: int = 4,
    seed: int | None = 0,
    negative: bool = True,
    tuning: bool = True,
    progress: bool = True,
) -> dict[str, int]:
    """Write feature visualizations and circuit links of ``layers`` of ``model`` into the store ``out_dir``.

    Args:
        model: an image model ``[B, 3, H, W] -> ...`` (put it in ``eval()`` mode); layers named as for ``capture``.
        model_name: the ``model`` key of the rows (e.g. the model card's name).
        layers: the layers to build, in any order.
        out_dir: the store folder (created if need be), or an open ``Store``.
        units_per_layer: build only the first ``n`` channels of each layer (default: all).
        channels: ``{layer: [channel, ...]}``: exactly these channels of that layer (overrides
            ``units_per_layer`` for it).
        featvis_steps, size, seed: of the feature visualizations (``size`` default 128 px, also the input size
            of the expanded weights).
        upstream_layer: ``{layer: earlier_layer}``: link each unit of ``layer`` to its ``k`` strongest units of
            ``earlier_layer`` (``upstream`` figures) and those back to it (``downstream`` figures).
        k: upstream units per unit.
        negative: also write ``featvis_negative`` figures (rendered in the same batch as the positives).
        tuning: also write ``tuning`` figures (radial tuning curves; layers without spatial maps are skipped).
        progress: show a progress bar over the layers.

    Returns:
        ``{"built": units for which something was written, "skipped": units already up to date}``.
    """
    if isinstance(out_dir, Store):
        return _build(out_dir, model, model_name, layers, units_per_layer, channels, featvis_steps, size,
                      upstream_layer, k, seed, negative, tuning, progress)
    with open_store(out_dir) as store:
        return _build(store, model, model_name, layers, units_per_layer, channels, featvis_steps, size,
                      upstream_layer, k, seed, negative, tuning, progress)


def _build(store: Store, model: nn.Module, model_name: str, layers: list[str], units_per_layer: int | None,
           channels: dict[str, list[int]] | None, steps: int, size: int | None, upstream_layer: dict[str, str] | None,
           k: int, seed: int | None, negative: bool, tuning: bool, progress: bool) -> dict[str, int]:
    size = int(size or DEFAULT_SIZE)
    if steps < 1:
        raise MechscopeError(f"featvis_steps must be at least 1, not {steps}")
    if not isinstance(k, int) or k < 1:
        raise MechscopeError(f"k is the number of upstream units to keep, at least 1 (got {k!r})")
    names = [validate(model, name).layer for name in layers]
    links = {validate(model, a).layer: validate(model, b).layer for a, b in (upstream_layer or {}).items()}
    unknown = sorted(set(links) - set(names))
    if unknown:
        raise MechscopeError(f"upstream_layer names layers {unknown} that are not being built; layers: {names}")
    shapes = layer_shapes(model, (3, size, size), sorted(set(names) | set(links.values())))
    counts = {"built": 0, "skipped": 0}
    featvis_want = {"steps": steps, "size": size}
    tuning_want = {"orientations": TUNING_ORIENTATIONS, "size": size}
    bar = tqdm(names, desc="microscope", disable=not progress)
    for layer in bar:
        width = int(shapes[layer][0])
        chosen = _select(layer, width, units_per_layer, channels)
        figures = {(r["channel"], r["kind"]): r for r in read_rows(store, "figures", model=model_name, layer=layer)}
        source = links.get(layer)
        upstream_want = {"layer": source, "k": k, "size": size}
        need_featvis = [c for c in chosen if not _same(figures.get((c, "featvis"), {}).get("settings"), featvis_want)]
        need_upstream = [] if source is None else [
            c for c in chosen if not _same(figures.get((c, "upstream"), {}).get("settings"), upstream_want)]
        need_negative = [c for c in chosen if negative and not _same(
            figures.get((c, "featvis_negative"), {}).get("settings"), featvis_want)]
        spatial = len(shapes[layer]) == 3  # [C, H, W]
        need_tuning = [c for c in chosen if tuning and spatial and not _same(
            figures.get((c, "tuning"), {}).get("settings"), tuning_want)]
        todo = sorted(set(need_featvis) | set(need_negative) | set(need_tuning) | set(need_upstream))
        counts["skipped"] += len(chosen) - len(todo)
        counts["built"] += len(todo)
        bar.set_postfix_str(f"{layer}: {len(todo)} units")
        has_layer_row = bool(read_rows(store, "layers", model=model_name, layer=layer))
        if not todo and has_layer_row:
            continue

        # compute everything first (the slow part), outside the transaction
        rows: list[dict[str, Any]] = []
        pngs: list[tuple[dict[str, Any], bytes]] = []  # (row, its PNG bytes): written first, then the rows
        render = sorted(set(need_featvis) | set(need_negative))
        if render:
            # one batch: positives (and negatives, labelled "<unit>#neg") of every unit that needs either
            units = [f"{layer}:{c}" for c in render]
            result = render_units(model, units, size=size, steps=steps, seed=seed, negative=bool(need_negative),
                                  progress=False)
            index = {label: i for i, label in enumerate(result.labels)}
            for kind, need, suffix in (("featvis", need_featvis, ""), ("featvis_negative", need_negative, "#neg")):
                for c in need:
                    i = index[f"{layer}:{c}{suffix}"]
                    pngs.append(({"model": model_name, "layer": layer, "channel": c, "kind": kind,
                                  "settings": {**featvis_want, "seed": seed, "score": float(result.activations[i]),
                                               "score_name": "activation"}}, png_bytes(result.final[i])))
        if need_tuning:
            curves = radial_tuning_curve(model, layer, need_tuning, n_orientations=TUNING_ORIENTATIONS, size=size,
                                         progress=False)
            preferred, preference = curves.preferred, curves.curve_preference
            for i, c in enumerate(need_tuning):
                pngs.append(({"model": model_name, "layer": layer, "channel": c, "kind": "tuning",
                              "settings": {**tuning_want, "preferred_deg": float(preferred[i]),
                                           "curve_preference": float(preference[i])}}, _tuning_png(curves, c)))
        downstream: dict[int, list[dict[str, Any]]] = {}  # upstream channel -> [{"unit", "weight"}] from this run
        for c in need_upstream:
            found = upstream_units(model, f"{layer}:{c}", source, size, k=k)
            linked = [{"unit": r.unit, "weight": r.strength if r.sign == "+" else -r.strength} for r in found]
            for link in linked:
                downstream.setdefault(_split(link["unit"])[1], []).append(
                    {"unit": f"{layer}:{c}", "weight": link["weight"]})
            row = {"model": model_name, "layer": layer, "channel": c, "kind": "upstream",
                   "settings": {"units": linked, **upstream_want}}
            if found:
                pngs.append((row, _heatmap_png(found, f"{source} -> {layer}:{c}")))
            else:
                rows.append({**row, "png": None})
        if source is not None and need_upstream:
            # downstream rows of the upstream units: drop this run's units from what was stored, add the new links
            rebuilt = {f"{layer}:{c}" for c in need_upstream}
            old = {r["channel"]: r for r in read_rows(store, "figures", model=model_name, layer=source,
                                                      kind="downstream")}
            for channel in sorted(set(old) | set(downstream)):
                kept = [u for u in ((old.get(channel) or {}).get("settings") or {}).get("units", [])
                        if u.get("unit") not in rebuilt]
                merged = sorted(kept + downstream.get(channel, []), key=lambda u: -abs(float(u["weight"])))
                row = {"model": model_name, "layer": source, "channel": channel, "kind": "downstream",
                       "settings": {"units": merged}}
                if merged:
                    pngs.append((row, _bars_png(merged, f"{source}:{channel} -> downstream")))
                else:
                    rows.append({**row, "png": None})
        with transaction(store):
            written = [{**row, "png": put_png(store, data)} for row, data in pngs]
            if not has_layer_row:
                put_rows(store, "layers", [{"model": model_name, "layer": layer, "channels": width,
                                            "settings": {"kind": "vision", "size": size,
                                                         "shape": list(shapes[layer])}}])
            put_rows(store, "figures", written + rows)
    return counts


__all__ = ["build"]
