"""Microscope pages of a *Toy Models of Superposition* experiment: one page per trained instance.

``build_toy`` runs an experiment of ``mechscope.superposition.experiments`` (or takes its ``ExperimentResult``)
and writes the rows that ``mechscope.microscope.site`` reads (see its store contract), under ``model`` (default
``"superposition"``) and ``layer`` = the experiment's name:

* one ``layers`` row, ``channels`` = the number of trained instances, ``settings = {"kind": "toy", "thumbnail":
  "geometry"`` (``"gram"`` when the hidden space is not 2-D), the experiment's settings (``steps``, ``best_of``,
  ...), ``"description"}``;
* layer-wide figures (``channel = -1``): every figure of the experiment (kind = its name: ``"norms"``,
  ``"geometry"``, ``"gram"``, ...) and a table-only ``"summary"``: per instance its setting, loss, represented
  features (``‖W_i‖ > 0.5``), superposed ones (represented with interference > 0.1) and the mean dimensionality
  ``D_i`` of its represented features;
* per instance (``channel`` = its index, ``W [n_features, n_hidden]`` its weights): ``"geometry"`` (the columns
  ``W_i`` as arrows in the plane, coloured by importance; only when ``n_hidden = 2``), ``"gram"`` (``W Wᵀ``,
  feature by feature, the paper's ``WᵀW``), ``"norms"`` (``‖W_i‖`` coloured by interference, as in the paper)
  and ``"metrics"`` (a table per feature: importance when known, norm, interference, dimensionality).  The
  thumbnail figure has ``score`` = represented features, so the layer grid sorts by it.

Every figure's settings hold ``steps`` and ``best_of``.  Incremental: when the store already holds the experiment
with the same ``steps`` and ``best_of`` (and, for a given ``result``, the same settings) and every instance's rows,
nothing is run or written.  The experiment is written in one ``transaction`` (its old figure rows replaced, PNGs
first), so an interruption leaves the previous pages.

Example::

    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> build_toy(out, "intro", steps=50, k=1, progress=False)
    {'built': 10, 'skipped': 0}
    >>> build_toy(out, "intro", steps=50, k=1, progress=False)
    {'built': 0, 'skipped': 10}
"""

from __future__ import annotations

import inspect
import os
import re
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mechscope.errors import MechscopeError, unknown_name
from mechscope.microscope.kinds import (FIGURE_KINDS, GEOMETRY, GRAM, METRICS, NORMS, SUMMARY, TOY, caption,
                                        figure_kind)
from mechscope.plots import agg_figure, png_of
from mechscope.store import Store, delete_rows, open_store, put_png, put_rows, read_rows, transaction
from mechscope.superposition import metrics as M
from mechscope.superposition.experiments import EXPERIMENTS, ExperimentResult, run_experiment

INSTANCE_KINDS = (GRAM.name, NORMS.name, METRICS.name)
"""Figure kinds written for every instance (plus ``"geometry"`` when ``n_hidden = 2``)."""


def _new_figure(width: float, height: float) -> tuple[Any, Any, Any]:
    """A headless figure, its axes and a colour-bar axes.

    Fixed positions instead of a layout engine: a layout pass costs more than drawing these small figures.
    """
    fig = agg_figure(width, height, layout=None)
    return fig, fig.add_axes((0.17, 0.2, 0.55, 0.68)), fig.add_axes((0.76, 0.2, 0.035, 0.68))


def _label(inst: dict[str, Any], i: int) -> str:
    """What instance ``i`` is, e.g. ``"1-S = 0.1"`` or ``"linear, S = 0.9"``."""
    parts = [str(inst[key]) for key in ("model", "pairs") if key in inst]
    for key, fmt in (("feature_probability", "1-S = {:.3g}"), ("density", "1-S = {:.3g}"),
                     ("sparsity", "S = {}"), ("relative_importance", "importance ratio {:.3g}")):
        if isinstance(inst.get(key), (int, float)):
            parts.append(fmt.format(inst[key]))
    return ", ".join(parts) or f"instance {i}"


def _importance(settings: dict[str, Any], inst: dict[str, Any], n: int) -> list[float] | None:
    """Per-feature importance ``[n]`` when the settings say it (``"0.9^i"``, a number, or a relative importance)."""
    if isinstance(inst.get("relative_importance"), (int, float)) and n == 2:
        return [1.0, float(inst["relative_importance"])]
    imp = settings.get("importance")
    if isinstance(imp, (int, float)) and not isinstance(imp, bool):
        return [float(imp)] * n
    m = re.fullmatch(r"([0-9.]+)\^i", imp) if isinstance(imp, str) else None
    return [float(m.group(1)) ** j for j in range(n)] if m else None


def _instance_weights(result: ExperimentResult) -> Tensor | None:
    """``W [instances, n, m]`` matching ``result.instances`` (``W`` then ``W_linear``), or ``None``."""
    parts = [result.weights[key] for key in ("W", "W_linear") if key in result.weights]
    for count in range(len(parts), 0, -1):
        if sum(len(p) for p in parts[:count]) == len(result.instances):
            return torch.cat(parts[:count]).detach().float().cpu()
    return None


def _geometry_png(w: Tensor, importance: list[float] | None, title: str) -> bytes:
    """Arrows from the origin to each ``W_i`` (``w [n, 2]``), coloured by importance (else by index)."""
    import matplotlib
    from matplotlib.colors import Normalize

    n = w.shape[0]
    values = importance or list(range(n))
    norm = Normalize(min(values), max(values) if max(values) > min(values) else min(values) + 1)
    cmap = matplotlib.colormaps["viridis"]
    lim = max(1.0, float(w.abs().max()) * 1.15)
    fig, ax, cax = _new_figure(3.2, 2.8)
    for j, (a, b) in enumerate(w.tolist()):
        colour = cmap(norm(values[j]))
        ax.annotate("", (a, b), (0, 0), arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.6})
        ax.text(a * 1.08, b * 1.08, str(j), fontsize=7, color=colour, ha="center", va="center")
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xticks=[], yticks=[])
    ax.set_title(title, fontsize=8)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, cax=cax, label="importance" if importance else "feature")
    return png_of(fig)


def _gram_png(w: Tensor, title: str) -> bytes:
    """Heatmap of ``W Wᵀ`` (``[n, n]``), red positive, blue negative, symmetric limits."""
    g = M.gram(w)
    vmax = max(float(g.abs().max()), 1e-12)
    side = min(4.0, 2.2 + 0.05 * w.shape[0])
    fig, ax, cax = _new_figure(side + 0.8, side)
    image = ax.imshow(g.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    ax.set(xlabel="feature", ylabel="feature")
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, cax=cax, label="W_i · W_j")
    return png_of(fig)


def _norms_png(norms: Tensor, inter: Tensor, title: str) -> bytes:
    """Horizontal bars of ``‖W_i‖`` (feature 0 on top), coloured by interference clipped to [0, 1]."""
    import matplotlib
    from matplotlib.colors import Normalize

    n = len(norms)
    cmap = matplotlib.colormaps["viridis"]
    fig, ax, cax = _new_figure(3.4, min(6.0, 1.4 + 0.22 * n))
    ax.barh(range(n), norms.tolist(), color=[cmap(float(v)) for v in inter.clamp(0, 1)])
    ax.set(ylim=(n - 0.5, -0.5), xlim=(0, max(1.0, float(norms.max()) * 1.05)), xlabel="‖W_i‖", ylabel="feature")
    ax.set_title(title, fontsize=8)
    sm = matplotlib.cm.ScalarMappable(norm=Normalize(0, 1), cmap=cmap)
    fig.colorbar(sm, cax=cax, label="interference")
    return png_of(fig)


def _defaults(name: str, steps: int | None, k: int | None) -> dict[str, Any]:
    """The ``steps`` / ``best_of`` an experiment run with these arguments records in its settings."""
    params = inspect.signature(EXPERIMENTS[name].run).parameters
    return {"steps": params["steps"].default if steps is None else steps,
            "best_of": params["k"].default if k is None else k}


def _up_to_date(store: Store, model: str, layer: str, want: dict[str, Any]) -> int | None:
    """The number of instances when the store holds this experiment built with ``want``, else ``None``."""
    rows = read_rows(store, "layers", model=model, layer=layer)
    settings = rows[0]["settings"] if rows else None
    if not isinstance(settings, dict) or settings.get("kind") != TOY.name or not isinstance(rows[0]["channels"], int):
        return None
    if any(settings.get(key) != value for key, value in want.items()):
        return None
    kinds = INSTANCE_KINDS + (str(settings.get("thumbnail")),)
    run = {key: want.get(key) for key in SUMMARY.fresh}
    needed = {k.name for k in FIGURE_KINDS} & {*kinds, SUMMARY.name}
    have = {(r["channel"], r["kind"]) for r in read_rows(store, "figures", model=model, layer=layer)
            if r["kind"] in needed and figure_kind(r["kind"]).up_to_date(r["settings"], run)}
    n = rows[0]["channels"]
    complete = (-1, SUMMARY.name) in have and all((c, kind) in have for c in range(n) for kind in kinds)
    return n if complete else None


def build_toy(out_dir: str | os.PathLike | Store, experiment: str = "intro", *, steps: int | None = None,
              k: int | None = None, result: ExperimentResult | None = None, model_name: str = "superposition",
              progress: bool = True) -> dict[str, int]:
    """Write the Microscope pages of a toy-model experiment into the store ``out_dir`` (see the module docstring).

    Args:
        out_dir: the store folder (created if need be), or an open ``Store``.
        experiment: a name of ``EXPERIMENTS`` (ignored when ``result`` is given: its ``name`` is used).
        steps, k: training steps and best-of seeds (default: the experiment's own); ignored with ``result``.
        result: an ``ExperimentResult`` already run: written as it is, nothing is trained.
        model_name: the ``model`` key of the rows.
        progress: show progress bars (training, then the instances' figures).

    Returns:
        ``{"built": instances written, "skipped": instances already up to date}``.
    """
    if steps is not None and steps < 1:
        raise MechscopeError(f"steps must be at least 1, not {steps}")
    if k is not None and k < 1:
        raise MechscopeError(f"k (best-of seeds) must be at least 1, not {k}")
    if result is None and experiment not in EXPERIMENTS:
        raise unknown_name("experiment", experiment, list(EXPERIMENTS), where="mechscope superposition")
    if isinstance(out_dir, Store):
        return _build(out_dir, experiment, steps, k, result, model_name, progress)
    with open_store(out_dir) as store:
        return _build(store, experiment, steps, k, result, model_name, progress)


def _build(store: Store, name: str, steps: int | None, k: int | None, result: ExperimentResult | None,
           model: str, progress: bool) -> dict[str, int]:
    want = dict(result.settings) if result is not None else _defaults(name, steps, k)
    layer = result.name if result is not None else name
    done = _up_to_date(store, model, layer, want)
    if done is not None:
        return {"built": 0, "skipped": done}
    if result is None:
        result = run_experiment(name, steps=steps, k=k, progress=progress)
    run = {key: result.settings.get(key) for key in ("steps", "best_of")}
    W = _instance_weights(result)
    n_inst = 0 if W is None else W.shape[0]
    m = 0 if W is None else W.shape[-1]
    thumbnail = (GEOMETRY if m == 2 else GRAM).name
    pngs: list[tuple[dict[str, Any], bytes]] = []  # (row without png, its bytes)
    rows: list[dict[str, Any]] = []

    def figure(channel: int, kind: str, settings: dict[str, Any], png: bytes | None = None) -> None:
        row = {"model": model, "layer": layer, "channel": channel, "kind": kind, "settings": {**settings, **run}}
        if png is None:
            rows.append({**row, "png": None})
        else:
            pngs.append((row, png))

    for key, fig in result.figures.items():
        figure(-1, key, {"caption": f"{caption(key)}: all instances"}, png_of(fig))
    summary = []
    labels = [_label(inst, i) for i, inst in enumerate(result.instances)]
    if W is not None:
        norms, inter, dims = M.feature_norms(W), M.interference(W), M.feature_dimensionality(W)
        represented = norms > 0.5
        superposed = represented & (inter > 0.1)
        mean_dim = (dims * represented).sum(-1) / represented.sum(-1).clamp_min(1)
        for i in tqdm(range(n_inst), desc=f"toy {layer}", disable=not progress):
            inst, label = result.instances[i], labels[i]
            loss = inst.get("loss")
            count = int(represented[i].sum())
            summary.append([i, label, loss, count, int(superposed[i].sum()), round(float(mean_dim[i]), 4)])
            note = f"{label} · loss {loss:.4g}" if isinstance(loss, (int, float)) else label
            score = {"score": count, "score_name": "features represented", "note": note}
            importance = _importance(result.settings, inst, W.shape[1])
            if m == 2:
                figure(i, GEOMETRY.name, {"caption": f"{GEOMETRY.caption} ({label})", **score},
                       _geometry_png(W[i], importance, label))
            figure(i, GRAM.name, {"caption": f"{GRAM.caption} ({label})",
                                **(score if thumbnail == GRAM.name else {})}, _gram_png(W[i], label))
            figure(i, NORMS.name, {"caption": f"{NORMS.caption} ({label})"}, _norms_png(norms[i], inter[i], label))
            table = [[j, None if importance is None else round(importance[j], 4), round(float(norms[i, j]), 4),
                      round(float(inter[i, j]), 4), round(float(dims[i, j]), 4)] for j in range(W.shape[1])]
            figure(i, METRICS.name, {"caption": f"Per-feature metrics ({label})", "note": note, "table": {
                "columns": ["feature", "importance", "norm ‖W_i‖", "interference", "dimensionality D_i"],
                "rows": table}})
    else:
        summary = [[i, label, inst.get("loss"), None, None, None]
                   for i, (inst, label) in enumerate(zip(result.instances, labels))]
    description = EXPERIMENTS[layer].description if layer in EXPERIMENTS else ""
    figure(-1, SUMMARY.name, {"caption": "Instances (represented: ‖W_i‖ > 0.5; superposed: also interference > 0.1; "
                                           "mean D_i over represented features)", "note": description,
                               "table": {"columns": ["instance", "setting", "loss", "represented features",
                                                     "superposed features", "mean dimensionality"], "rows": summary}})
    settings = {**result.settings, "kind": TOY.name, "thumbnail": thumbnail, "steps": run["steps"],
                "description": description}
    with transaction(store):
        written = [{**row, "png": put_png(store, data)} for row, data in pngs]
        delete_rows(store, "figures", model=model, layer=layer)
        put_rows(store, "layers", [{"model": model, "layer": layer, "channels": n_inst, "settings": settings}])
        put_rows(store, "figures", written + rows)
    return {"built": n_inst, "skipped": 0}


__all__ = ["INSTANCE_KINDS", "build_toy"]
