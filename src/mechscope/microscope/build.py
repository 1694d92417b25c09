"""Fill a results store with the Microscope's per-unit evidence of an image model.
(Over 400 lines because planning what is stale, running the slices on an engine and writing each layer in one
transaction share the private ``_Settings`` and the store's freshness rules; the figures themselves are
computed elsewhere: ``microscope.evidence``, ``microscope.layer_evidence``, ``vision.evidence.scan_store``.)

``build`` writes, for every selected unit of every layer, the rows that ``mechscope.microscope.site`` reads (see
its store contract); the figures themselves are computed by ``mechscope.microscope.evidence``; what to compute is
given by the option objects of ``mechscope.microscope.options`` (``Evidence``, ``Links``, ``DatasetEvidence``):

* a ``layers`` row per layer (``channels`` = the layer's width, ``settings`` with ``{"kind": "vision", "size",
  "shape"}`` merged into whatever an earlier scan recorded there);
* a ``featvis`` figure per unit: all the units of a layer (or of a worker's slice of it) are optimized in one
  ``render_units`` batch; ``settings = {"steps", "size", "seed", "score", "score_name": "activation"}`` where
  ``score`` is the unit's activation on its own visualization (it sorts the layer grid);
* with ``Evidence(negative=True)`` (default), a ``featvis_negative`` figure per unit (same batch, same settings keys);
* with ``Evidence(diversity=n)`` (``n >= 2``), a ``featvis_diversity`` figure: ``n`` images per unit pushed apart by
  Lucid's diversity penalty, side by side;
* with ``Evidence(tuning=True)`` (default), a ``tuning`` figure per unit of a layer with spatial maps: the polar plot of
  its radial tuning curve (72 orientations), ``settings = {"orientations", "size", "preferred_deg",
  "curve_preference", "score"}`` (the score is the curve preference: the layer grid can sort by curve-likeness);
  its stimuli run once per layer (a task of their own), whatever the number of slices;
* with ``links=Links({layer: earlier_layer}, k)``, an ``upstream`` figure per unit (heatmap of the expanded-weight
  kernels of its ``k`` strongest units of ``earlier_layer``; ``settings["units"]`` are the links) and on each of
  those a ``downstream`` figure listing the units that named it (merged with what the store had), so the circuit
  can be walked both ways;
* with ``dataset=DatasetEvidence(dataset, name, examples_k)``: per unit its top/bottom ``examples_k`` dataset
  examples (receptive-field crops), statistics, a ``log_prob`` figure (the log-probability density of its
  activations) and a ``quilt`` (``vision.scan_store.save_scan``), and, where the layer has an upstream layer, an
  ``attribution`` figure: its top example's activation x gradient over the upstream layer, with links to the
  strongest source units;
* with ``feature_use=FeatureUse(images, mode)`` (shapes-world organisms), an ``ablation`` figure per unit: what
  ablating it alone costs each task (``microscope.layer_evidence``); the grid can sort by that cost;
* with ``partners=Partners(model)``, a ``partner`` figure per unit: its most correlated units of the same layer
  of another network, linked when that network's units are in the store.

Incremental: a unit whose rows hold the same settings (steps and size of the visualizations; orientations of the
tuning; layer, ``k`` and size of the links; dataset, ``examples_k`` and size of the scan: the ``fresh`` keys of
``mechscope.microscope.kinds``) is not computed again;
a unit needing nothing counts as skipped.  Each layer is written in one ``transaction`` (PNGs first, then rows),
so an interruption leaves no half-written layer, and a rerun resumes with the layers still missing.  The units
are computed in slices on a ``mechscope.compute.engine`` (in this process, or on a Ray cluster); only this process
writes, so a slice that Ray reruns after a worker died neither loses nor duplicates a row.

Example::

    >>> import tempfile
    >>> from torch import nn
    >>> from mechscope.microscope.options import Evidence, Links
    >>> net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)).eval()
    >>> out = tempfile.mkdtemp()
    >>> fast = Evidence(steps=2, size=16)
    >>> build(net, "toy", ["0", "2"], out, evidence=fast, links=Links({"2": "0"}, k=1), progress=False)
    {'built': 4, 'skipped': 0}
    >>> build(net, "toy", ["0", "2"], out, evidence=fast, links=Links({"2": "0"}, k=1), progress=False)
    {'built': 0, 'skipped': 4}
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from mechscope.capture import layer_shapes
from mechscope.compute.engine import Engine, InProcess, engine as default_engine
from mechscope.devices import checked_device, model_device, portable, worker_device
from mechscope.errors import MechscopeError
from mechscope.microscope.evidence import (TUNING_ORIENTATIONS, Computed, Job, attribution_figure, bars_png,
                                           compute)
from mechscope.microscope.kinds import (ABLATION, ATTRIBUTION, DOWNSTREAM, FEATVIS, FEATVIS_DIVERSITY,
                                        FEATVIS_NEGATIVE, PARTNER, TUNING, UPSTREAM, VISION, FigureKind)
from mechscope.microscope.layer_evidence import ablation_figures, partner_figures, stale_units
from mechscope.microscope.options import (DEFAULT_SIZE, EXAMPLES_K, DatasetEvidence, Evidence, FeatureUse, Links,
                                          Partners)
from mechscope.store import Store, open_store, put_png, put_rows, read_rows, transaction
from mechscope.units import validate

SLICE = 32  # most units computed in one go (one feature-visualization batch)


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


@dataclass(frozen=True)
class _Settings:
    """What every slice of a build shares: the rows' model name, the per-unit evidence (``size`` resolved), ``k``,
    the device the build asked for (a task runs there when its worker has it, else on the CPU) and ``amp``."""

    model_name: str
    evidence: Evidence
    k: int
    device: str = "cpu"
    amp: bool = False

    @property
    def size(self) -> int:
        return self.evidence.pixels


def build(
    model: nn.Module,
    model_name: str,
    layers: list[str],
    out_dir: str | os.PathLike | Store,
    *,
    units_per_layer: int | None = None,
    channels: dict[str, list[int]] | None = None,
    evidence: Evidence = Evidence(),
    links: Links | None = None,
    dataset: DatasetEvidence | None = None,
    feature_use: FeatureUse | None = None,
    partners: Partners | None = None,
    engine: Engine | None = None,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Write the evidence of ``layers``' units of ``model`` into the store ``out_dir``.

    Args:
        model: an image model ``[B, 3, H, W] -> ...`` (put it in ``eval()`` mode); layers named as for ``capture``.
            On a Ray engine it must pickle (any plain ``nn.Module`` does).
        model_name: the ``model`` key of the rows (e.g. the model card's name).
        layers: the layers to build, in any order.
        out_dir: the store folder (created if need be), or an open ``Store``.
        units_per_layer: build only the first ``n`` channels of each layer (default: all).
        channels: ``{layer: [channel, ...]}``: exactly these channels of that layer (overrides
            ``units_per_layer`` for it).
        evidence: the figures per unit (``options.Evidence``: feature-visualization steps, size and seed,
            negatives, tuning curves, diversity sets).
        links: ``options.Links(upstream={layer: earlier_layer}, k)``: link each unit of ``layer`` to its ``k``
            strongest units of ``earlier_layer`` and those back to it (default: no links).
        dataset: ``options.DatasetEvidence(dataset, name, examples_k)``: top/bottom dataset examples, statistics
            and activation-distribution figures of the built units, and the attribution of each linked unit's top
            example (default: none).
        feature_use: ``options.FeatureUse(images, mode)``: per unit, what ablating it alone costs each task of
            the shapes world (``ablation`` figures; shapes-world organisms only; default: none).
        partners: ``options.Partners(model, images, k)``: per unit, its most correlated units of the same layer
            of the zoo network ``model`` (``partner`` figures; default: none).
        engine: where the feature visualizations, tuning curves and links are computed
            (``mechscope.compute.engine``): each layer's units are cut into slices (tasks, at most ``SLICE`` units
            each), the model goes to the workers once, and this process alone writes each layer once all its slices
            are back.  Default ``compute.engine.engine(None)``: in this process, or on the Ray cluster at
            ``$RAY_ADDRESS``.  Per-unit seeds make the figures the same whichever engine or slice computed them.
        device: where the model runs (``cpu``, ``cuda``, ``cuda:N``; checked first by
            ``devices.checked_device``; the model is moved there in place); default: where the model is.  A Ray
            task runs on it when its worker has that device, else on the CPU (``devices.worker_device``); the
            model travels to the workers as a CPU copy, and results come back as floats and PNG bytes.
        amp: the feature visualizations and the dataset scan's forward passes in bfloat16 autocast on CUDA
            (``devices.autocast``); nothing on the CPU.  Statistics still accumulate in float64; tuning curves,
            links and attributions stay float32.
        progress: a progress bar over the units.

    Returns:
        ``{"built": units for which something was written, "skipped": units already up to date}``.
    """
    for value, kind, what in ((evidence, Evidence, "evidence"), (links, Links, "links"),
                              (dataset, DatasetEvidence, "dataset"), (feature_use, FeatureUse, "feature_use"),
                              (partners, Partners, "partners")):
        if value is not None and not isinstance(value, kind):
            raise MechscopeError(f"{what} takes a mechscope.microscope.options.{kind.__name__}, not "
                                 f"{type(value).__name__}")
    if device is not None:
        model.to(checked_device(device))
    placed = (str(model_device(model)), bool(amp))
    if isinstance(out_dir, Store):
        return _build(out_dir, model, model_name, layers, units_per_layer, channels, evidence, links, dataset,
                      (feature_use, partners), engine, progress, placed)
    with open_store(out_dir) as store:
        return _build(store, model, model_name, layers, units_per_layer, channels, evidence, links, dataset,
                      (feature_use, partners), engine, progress, placed)


def _build(store: Store, model: nn.Module, model_name: str, layers: list[str], units_per_layer: int | None,
           channels: dict[str, list[int]] | None, evidence: Evidence, links: Links | None,
           dataset: DatasetEvidence | None, per_layer: tuple[FeatureUse | None, Partners | None],
           compute_engine: Engine | None, progress: bool, placed: tuple[str, bool] = ("cpu", False)
           ) -> dict[str, int]:
    if compute_engine is not None and not callable(getattr(compute_engine, "map", None)):
        raise MechscopeError(f"engine takes a mechscope.compute.engine Engine (engine(None), engine('auto'), ...), "
                             f"not {type(compute_engine).__name__}")
    links = links or Links()
    names = list(dict.fromkeys(validate(model, name).layer for name in layers))
    sources = {validate(model, a).layer: validate(model, b).layer for a, b in links.upstream.items()}
    unknown = sorted(set(sources) - set(names))
    if unknown:
        raise MechscopeError(f"links.upstream names layers {unknown} that are not being built; layers: {names}")
    config = _Settings(model_name, evidence, links.k, *placed)
    size = config.size
    shapes = layer_shapes(model, (3, size, size), sorted(set(names) | set(sources.values())))
    chosen = {layer: _select(layer, int(shapes[layer][0]), units_per_layer, channels) for layer in names}
    jobs = {layer: _plan(store, config, layer, chosen[layer], sources.get(layer),
                         evidence.tuning and len(shapes[layer]) == 3) for layer in names}
    counts = {"built": 0, "skipped": 0}
    todo_units = {layer: set(job.units) for layer, job in jobs.items()}
    if dataset is not None:
        spatial = {layer: len(shapes[layer]) == 3 for layer in names}
        for layer, units in _scan_dataset(store, model, config, chosen, sources, spatial, dataset, progress,
                                          engine=compute_engine).items():
            todo_units[layer] |= units
    layer_jobs = {layer: stale_units(store, model_name, layer, chosen[layer], *per_layer) for layer in names}
    for layer, stale in layer_jobs.items():
        todo_units[layer] |= {c for cs in stale.values() for c in cs}
    for layer in names:
        counts["built"] += len(todo_units[layer])
        counts["skipped"] += len(chosen[layer]) - len(todo_units[layer])
    bar = tqdm(total=sum(len(job.units) for job in jobs.values()), desc="microscope", unit="unit",
               disable=not progress)  # tqdm shows units/s and the time left
    if compute_engine is None:  # connect (to $RAY_ADDRESS) only when there is something to compute
        compute_engine = default_engine(None) if any(job.units for job in jobs.values()) else InProcess()
    for layer, done in _run(model, config, jobs, compute_engine, bar):
        _write(store, config, layer, done, shapes[layer])
    bar.close()
    for layer, stale in layer_jobs.items():
        _write_layer_evidence(store, model, config, layer, stale, per_layer, shapes[layer], progress)
    return counts


def _write_layer_evidence(store: Store, model: nn.Module, config: _Settings, layer: str,
                          stale: dict[str, list[int]], per_layer: tuple[FeatureUse | None, Partners | None],
                          shape: Sequence[int], progress: bool) -> None:
    feature_use, partners = per_layer
    if not stale.get(ABLATION.name) and not stale.get(PARTNER.name):
        return
    model = portable(model, "cpu copy")  # on the CPU: these take CPU inputs (held-out worlds, a partner network)
    made: list[tuple[dict[str, Any], bytes | None]] = []
    if stale.get(ABLATION.name):
        if progress:
            print(f"feature use: ablating {len(stale[ABLATION.name])} {layer} units one at a time", flush=True)
        made += ablation_figures(model, config.model_name, layer, stale[ABLATION.name], feature_use)
    if stale.get(PARTNER.name):
        made += partner_figures(model, layer, stale[PARTNER.name], partners)
    if made:
        _write(store, config, layer, Computed(pngs=[m for m in made if m[1] is not None],
                                              rows=[{**row, "png": None} for row, png in made if png is None]), shape)


def _plan(store: Store, config: _Settings, layer: str, chosen: list[int], source: str | None, tuning: bool) -> Job:
    """What each of ``chosen`` still needs (nothing when its rows hold the same settings)."""
    figures = {(r["channel"], r["kind"]): r for r in read_rows(store, "figures", model=config.model_name, layer=layer)}

    evidence = config.evidence
    want = {"steps": evidence.steps, "size": config.size, "n": evidence.diversity,
            "orientations": TUNING_ORIENTATIONS, "layer": source, "k": config.k}

    def need(kind: FigureKind, on: bool = True) -> tuple[int, ...]:
        return tuple(c for c in chosen if on and not kind.up_to_date(figures.get((c, kind.name), {}).get("settings"),
                                                                       want))

    return Job(layer, featvis=need(FEATVIS), negative=need(FEATVIS_NEGATIVE, evidence.negative),
               tuning=need(TUNING, tuning), upstream=need(UPSTREAM, source is not None), source=source,
               diversity=need(FEATVIS_DIVERSITY, evidence.diversity > 1))


# ---------------------------------------------------------------------------------------------------- tasks

def _compute(shared: tuple[nn.Module, _Settings], job: Job) -> Computed:
    """One task of ``engine.map``: a slice of one layer's units (module-level: Ray pickles it by reference)."""
    model, config = shared
    device = worker_device(config.device)
    if model_device(model) != device:
        model.to(device)   # a Ray worker's own copy (a CPU one from the driver) onto its GPU, when it has one
    return compute(model, job, replace(config.evidence, size=config.size), k=config.k, amp=config.amp)


def _merge(parts: Sequence[Computed]) -> Computed:
    out = Computed()
    for part in parts:
        out.pngs += part.pngs
        out.rows += part.rows
        for channel, linked in part.downstream.items():
            out.downstream.setdefault(channel, []).extend(linked)
    return out


def _slice_size(units: int, workers: int) -> int:
    """Units per task: with one worker, ``SLICE`` (one feature-visualization batch of the largest size; smaller
    batches cost more per unit); with several, about two tasks per worker for a layer (so that a slow slice does
    not leave workers idle), at most ``SLICE``.  What a unit's figures are does not depend on it (per-unit seeds)."""
    if workers <= 1:
        return max(1, min(SLICE, units))
    return max(1, min(SLICE, -(-units // (2 * workers))))


def _tasks(job: Job, workers: int) -> list[Job]:
    """``job`` as tasks: its tuning curves in one task of their own (the stimuli's forward pass is the cost, once
    per layer whatever the number of units; a unit's curve is the same in any set of units), everything else in
    slices of ``_slice_size`` units."""
    rest = replace(job, tuning=())
    tasks = rest.split(-(-len(rest.units) // _slice_size(len(rest.units), workers))) if rest.units else []
    return tasks + ([Job(job.layer, tuning=job.tuning)] if job.tuning else [])


def _run(model: nn.Module, config: _Settings, jobs: dict[str, Job], compute_engine: Engine, bar: Any
         ) -> Iterator[tuple[str, Computed]]:
    """Yield ``(layer, Computed)`` per layer once all its slices are back (in the order they finish).

    Every layer's slices are tasks of one ``compute_engine.map`` (the model and settings are its ``shared``: they
    travel once); this process, the driver, merges the slices of a layer in slice order."""
    tasks: list[Job] = []
    owner: list[str] = []
    ticks: list[int] = []
    for layer, job in jobs.items():
        if not job.units:  # nothing to compute: written at once
            yield layer, Computed()
            continue
        counted: set[int] = set()
        for piece in _tasks(job, compute_engine.workers):
            tasks.append(piece)
            owner.append(layer)
            ticks.append(len(set(piece.units) - counted))   # the bar counts each unit once
            counted |= set(piece.units)
    parts: dict[str, dict[int, Computed]] = {layer: {} for layer in owner}
    left = {layer: owner.count(layer) for layer in parts}
    for i, done in compute_engine.map(_compute, tasks, shared=(portable(model, compute_engine.name), config)):
        layer = owner[i]
        parts[layer][i] = done
        bar.update(ticks[i])
        left[layer] -= 1
        if left[layer] == 0:
            bar.set_postfix_str(layer)
            mine = parts.pop(layer)
            yield layer, _merge([mine[j] for j in sorted(mine)])


# ---------------------------------------------------------------------------------------------------- writing

def _write(store: Store, config: _Settings, layer: str, done: Computed, shape: Sequence[int]) -> None:
    """One transaction: the layer's PNGs and rows, the merged downstream rows of its upstream layer, and its
    ``layers`` row (kind ``vision``, merged into what an earlier scan wrote)."""
    name = config.model_name
    pngs = [({**row, "model": name}, data) for row, data in done.pngs]
    rows = [{**row, "model": name} for row in done.rows]
    upstream = [row for row in [row for row, _ in done.pngs] + done.rows if row["kind"] == UPSTREAM.name]
    rebuilt = {f"{layer}:{row['channel']}" for row in upstream}
    for source in {row["settings"]["layer"] for row in upstream}:
        # drop this run's units from what was stored, add the new links; rows this run does not touch stay as they are
        old = {r["channel"]: r for r in read_rows(store, "figures", model=name, layer=source, kind=DOWNSTREAM.name)}
        for channel in sorted(set(old) | set(done.downstream)):
            stored = ((old.get(channel) or {}).get("settings") or {}).get("units", [])
            kept = [u for u in stored if u.get("unit") not in rebuilt]
            if channel not in done.downstream and len(kept) == len(stored):
                continue
            merged = sorted(kept + done.downstream.get(channel, []), key=lambda u: -abs(float(u["weight"])))
            row = {"model": name, "layer": source, "channel": channel, "kind": DOWNSTREAM.name,
                   "settings": {"units": merged}}
            if merged:
                pngs.append((row, bars_png(merged, f"{source}:{channel} -> downstream")))
            else:
                rows.append({**row, "png": None})
    old_layer = read_rows(store, "layers", model=name, layer=layer)
    settings = dict(old_layer[0]["settings"] or {}) if old_layer else {}
    want = {"kind": VISION.name, "size": config.size, "shape": list(shape)}
    with transaction(store):
        written = [{**row, "png": put_png(store, data)} for row, data in pngs]
        if not old_layer or not _same(settings, want):
            put_rows(store, "layers", [{"model": name, "layer": layer, "channels": int(shape[0]),
                                        "settings": {**settings, **want}}])
        put_rows(store, "figures", written + rows)


# ---------------------------------------------------------------------------------------------------- dataset

def _scan_dataset(store: Store, model: nn.Module, config: _Settings, chosen: dict[str, list[int]],
                  links: dict[str, str], spatial: dict[str, bool], data: DatasetEvidence,
                  progress: bool, engine: Any = None) -> dict[str, set[int]]:
    """Dataset examples, statistics and distribution plots of the chosen units (``vision.scan_store``) and the
    attribution of each one's top example to its upstream layer -> the units written, per layer.

    One pass over the data for every stale layer (one forward per batch captures them all); with an ``engine``
    of more than one worker (``compute.engine``) the pass is cut into image ranges run there and merged exactly
    (``vision.evidence.shards``)."""
    from mechscope.vision.evidence.scan import scan
    from mechscope.vision.evidence.shards import sharded_scan
    from mechscope.microscope.polysemantic import save_polysemanticity
    from mechscope.vision.evidence.scan_store import save_scan

    name = config.model_name
    dataset = data.dataset
    tag = {"dataset": data.label, "examples_k": data.examples_k, "size": config.size}
    stale = []
    for layer, units in chosen.items():
        row = read_rows(store, "layers", model=name, layer=layer)
        have = {r["channel"] for r in read_rows(store, "examples", model=name, layer=layer, which="top", rank=0)}
        attributed = {r["channel"]: r for r in read_rows(store, "figures", model=name, layer=layer,
                                                         kind=ATTRIBUTION.name)}
        source = links.get(layer)
        fresh = row and _same((row[0]["settings"] or {}).get("scan"), tag) and set(units) <= have and (
            source is None or all(ATTRIBUTION.up_to_date(attributed.get(c, {}).get("settings"),
                                                          {**tag, "source": source}) for c in units))
        if not fresh:
            stale.append(layer)
    if not stale:
        return {}
    if engine is not None and (engine.name == "ray" or engine.workers > 1):
        state = sharded_scan(model, dataset, stale, engine=engine, k=data.examples_k, progress=progress,
                             settings={"scan": tag}, device=config.device, amp=config.amp)
    else:
        state = scan(model, dataset, stale, k=data.examples_k, progress=progress, settings={"scan": tag},
                     amp=config.amp)
    save_scan(store, state, model, dataset, model_name=name, input_size=config.size,
              plot_units={layer: chosen[layer] for layer in stale}, settings={"scan": tag}, progress=progress)
    save_polysemanticity(store, state, dataset, name, stale, tag)   # labelled worlds only
    for layer in stale:
        if layer in links:
            _attribute_top_examples(store, model, config, layer, links[layer], chosen[layer], state, dataset, tag,
                                    spatial[layer], progress)
    return {layer: set(chosen[layer]) for layer in stale}


def _attribute_top_examples(store: Store, model: nn.Module, config: _Settings, layer: str, source: str,
                            units: list[int], state: Any, dataset: Any, tag: dict[str, Any], spatial: bool,
                            progress: bool) -> None:
    from mechscope.vision.circuits.attribution import attribute

    examples = state.examples[layer]
    pngs = []
    for c in tqdm(units, desc=f"attribution {layer}", unit="unit", disable=not progress):
        index = int(examples.top_index[c][0])
        if index < 0:
            continue
        image = _item(dataset, index)
        x, y = (int(v) for v in examples.top_pos[c][0])
        unit = f"{layer}:{c}@{x},{y}" if spatial else f"{layer}:{c}"
        attr = attribute(model, image[None], unit, source)
        top = attr.top(config.k)
        pngs.append(({"model": config.model_name, "layer": layer, "channel": c, "kind": ATTRIBUTION.name,
                      "settings": {**tag, "source": source, "dataset_index": index, "position": [x, y],
                                   "total": float(attr.total[0]),
                                   "units": [{"unit": f"{source}:{s}", "weight": v} for s, v in top]}},
                     attribution_figure(attr, image)))
    with transaction(store):
        put_rows(store, "figures", [{**row, "png": put_png(store, data)} for row, data in pngs])


def _item(dataset: Any, index: int) -> torch.Tensor:
    """Item ``index`` of ``dataset`` as ``[3, H, W]`` (``dataset[i]`` or ``dataset.sample([i])``)."""
    if hasattr(dataset, "sample"):
        return dataset.sample([index])[0][0]
    item = dataset[index]
    return item[0] if isinstance(item, tuple) else item


__all__ = ["build", "Evidence", "Links", "DatasetEvidence", "FeatureUse", "Partners", "DEFAULT_SIZE", "EXAMPLES_K"]
