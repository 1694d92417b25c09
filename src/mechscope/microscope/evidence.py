"""The Microscope's per-unit evidence of an image model, computed as plain data (rows + PNG bytes) so that it can
run in a worker process and be written to the store by the parent (``mechscope.microscope.build``).

``compute(model, job, ...)`` does one ``Job``: a slice of one layer's units and the kinds of evidence each needs
(feature visualization, its negative, a diversity set, radial tuning curve, upstream links).  It returns a
``Computed``: ``pngs`` (``(row, png_bytes)``: figure rows whose ``png`` the writer fills in), ``rows`` (figure
rows without a PNG) and ``downstream`` (``{upstream channel: [{"unit", "weight"}]}``, the reverse links the writer
merges into the upstream layer's ``downstream`` rows).  Rows carry no ``model`` key; the writer adds it.

``attribution_figure`` draws the attribution of a unit's top dataset example (``vision.attribution``).

Example::

    >>> from torch import nn
    >>> from mechscope.microscope.options import Evidence
    >>> net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)).eval()
    >>> done = compute(net, Job("2", featvis=(0,), negative=(0,), tuning=(), upstream=(1,), source="0"),
    ...                Evidence(steps=2, size=16), k=1)
    >>> sorted((row["kind"], row["channel"]) for row, _ in done.pngs)
    [('featvis', 0), ('featvis_negative', 0), ('upstream', 1)]
    >>> [u["unit"] for u in next(iter(done.downstream.values()))]
    ['2:1']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn

from mechscope.images import grid, png_bytes
from mechscope.microscope.kinds import FEATVIS, FEATVIS_DIVERSITY, FEATVIS_NEGATIVE, TUNING, UPSTREAM
from mechscope.microscope.options import Evidence
from mechscope.plots import agg_figure, png_of
from mechscope.units import parse_unit
from mechscope.vision.circuits.graph import upstream_of
from mechscope.vision.featvis.render import render_units
from mechscope.vision.families.tuning import radial_tuning_curve
from mechscope.vision.circuits.weights import kernel_heatmap

TUNING_ORIENTATIONS = 72


@dataclass(frozen=True)
class Job:
    """Units of one layer and what to compute for each (channel tuples; ``source`` = the upstream layer)."""

    layer: str
    featvis: tuple[int, ...] = ()
    negative: tuple[int, ...] = ()
    tuning: tuple[int, ...] = ()
    upstream: tuple[int, ...] = ()
    source: str | None = None
    diversity: tuple[int, ...] = ()

    @property
    def units(self) -> list[int]:
        return sorted(set(self.featvis) | set(self.negative) | set(self.tuning) | set(self.upstream)
                      | set(self.diversity))

    def split(self, parts: int) -> list[Job]:
        """This job as at most ``parts`` jobs over disjoint slices of its units (for worker processes)."""
        units = self.units
        size = max(1, -(-len(units) // max(1, parts)))
        out = []
        for lo in range(0, len(units), size):
            mine = set(units[lo:lo + size])
            out.append(replace(self, **{f: tuple(c for c in getattr(self, f) if c in mine) for f in _CHANNELS}))
        return out


_CHANNELS = tuple(f.name for f in fields(Job) if f.name not in ("layer", "source"))  # the channel tuples


@dataclass
class Computed:
    """What ``compute`` made: figure rows with PNG bytes, rows without a PNG, and reverse (downstream) links."""

    pngs: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    downstream: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- figures

def heatmap_png(rows: Sequence[Any], title: str) -> bytes:
    """Kernels of ``vision.circuits.upstream`` rows side by side, one shared colour scale."""
    kernels = torch.stack([r.weights.detach().float().cpu() for r in rows])  # [k, h, w]
    c, kh, kw = kernels.shape
    width, height = max(2.0, 0.35 * c * (kw + 1)), max(1.5, 0.35 * kh + 0.6)
    fig = agg_figure(width, height, layout=None)  # fixed margins: a layout pass costs more than the drawing
    fig.subplots_adjust(left=0.04, right=0.96, bottom=0.04, top=1 - 0.45 / height)
    kernel_heatmap(kernels, fig.add_subplot(1, 1, 1), title=title)
    return png_of(fig)


def bars_png(units: Sequence[dict[str, Any]], title: str) -> bytes:
    """Bar chart of the signed weights of ``units`` (red excitatory, blue inhibitory)."""
    names = [u["unit"] for u in units]
    weights = [float(u["weight"]) for u in units]
    fig = agg_figure(max(2.5, 0.5 * len(units) + 1), 2.4, layout=None)
    fig.subplots_adjust(left=0.2, right=0.97, bottom=0.38, top=0.88)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(units)), weights, color=["#b2182b" if w >= 0 else "#2166ac" for w in weights])
    ax.set_xticks(range(len(units)), names, rotation=45, ha="right", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_title(title, fontsize=8)
    return png_of(fig)


def attribution_figure(attr: Any, image: torch.Tensor, k: int = 8) -> bytes:
    """The example image with the unit's position, the spatial attribution map and the top ``k`` source channels.

    ``attr``: a one-image ``vision.attribution.Attribution``; ``image``: its input ``[3, H, W]`` in ``[0, 1]``.
    """
    from mechscope.vision.circuits.attribution import attribution_map_plot, top_contributors_plot

    fig = agg_figure(10.0, 3.2, layout=None)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.14, top=0.88, wspace=0.55)
    ax = fig.add_subplot(1, 3, 1)
    ax.imshow(image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy())
    if attr.positions is not None:  # the unit's cell, in input pixels (x = rows, y = columns)
        gx, gy = attr.unit_grid
        h, w = attr.input_size
        x, y = (int(v) for v in attr.positions[0])
        ax.add_patch(_rectangle(((y + 0.5) * w / gy - 0.5, (x + 0.5) * h / gx - 0.5), w / gy, h / gx))
    ax.set_title(f"top example · {attr.unit} = {float(attr.total[0]):.3g}", fontsize=8)
    ax.set_axis_off()
    attribution_map_plot(attr, 0, ax=fig.add_subplot(1, 3, 2))
    top_contributors_plot(attr, k, 0, ax=fig.add_subplot(1, 3, 3))
    return png_of(fig)


def _rectangle(centre: tuple[float, float], width: float, height: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((centre[0] - width / 2, centre[1] - height / 2), width, height, fill=False,
                     edgecolor="yellow", linewidth=1.5)


def _tuning_png(tuning: Any, channel: int) -> bytes:
    fig = agg_figure(3.2, 3.2)
    tuning.plot(channel, ax=fig.add_subplot(1, 1, 1, projection="polar"))
    return png_of(fig)


# ---------------------------------------------------------------------------------------------------- compute

def compute(model: nn.Module, job: Job, evidence: Evidence, k: int = 4, amp: bool = False) -> Computed:
    """Do ``job`` on ``model`` (see the module docstring): ``evidence.pixels`` is the input size, ``evidence.steps``
    and ``.seed`` those of the feature visualizations, ``evidence.diversity`` the images per unit of the diversity
    sets (for ``job.diversity``); ``k`` upstream units per unit.  Which units get which figure is ``job``'s to say
    (``evidence.negative`` and ``.tuning`` are the planner's).  Everything runs on the model's device; ``amp``:
    the feature visualizations' forward passes in bfloat16 autocast on CUDA (``RenderOptions.amp``; the tuning
    curves and links stay float32: they are cheap, and a preferred angle or a link order should not move with
    rounding).  What comes back is plain data (floats, PNG bytes), never a device tensor."""
    size, steps, seed, diversity = evidence.pixels, evidence.steps, evidence.seed, evidence.diversity
    done = Computed()
    layer = job.layer
    featvis_settings = {"steps": steps, "size": size}
    render = sorted(set(job.featvis) | set(job.negative))
    if render:  # one batch: positives (and negatives, "<unit>#neg") of every unit that needs either
        result = render_units(model, [f"{layer}:{c}" for c in render], size=size, steps=steps, seed=seed,
                              negative=bool(job.negative), progress=False, amp=amp)
        index = {label: i for i, label in enumerate(result.labels)}
        for kind, need, suffix in ((FEATVIS, job.featvis, ""), (FEATVIS_NEGATIVE, job.negative, "#neg")):
            for c in need:
                i = index[f"{layer}:{c}{suffix}"]
                done.pngs.append(({"layer": layer, "channel": c, "kind": kind.name,
                                   "settings": {**featvis_settings, "seed": seed,
                                                "score": float(result.activations[i]), "score_name": "activation"}},
                                  png_bytes(result.final[i])))
    if job.diversity and diversity > 1:
        result = render_units(model, [f"{layer}:{c}" for c in job.diversity], size=size, steps=steps, seed=seed,
                              diversity=diversity, progress=False, amp=amp)
        for j, c in enumerate(job.diversity):
            images = result.final[j * diversity:(j + 1) * diversity]
            done.pngs.append(({"layer": layer, "channel": c, "kind": FEATVIS_DIVERSITY.name,
                               "settings": {**featvis_settings, "seed": seed, "n": diversity}},
                              png_bytes(grid(images, ncols=diversity))))
    if job.tuning:
        curves = radial_tuning_curve(model, layer, list(job.tuning), n_orientations=TUNING_ORIENTATIONS, size=size,
                                     position="layer_max", progress=False)  # not the slice's: the same in any slice
        preferred, preference = curves.preferred, curves.curve_preference
        for i, c in enumerate(job.tuning):
            done.pngs.append(({"layer": layer, "channel": c, "kind": TUNING.name,
                               "settings": {"orientations": TUNING_ORIENTATIONS, "size": size,
                                            "preferred_deg": float(preferred[i]),
                                            "curve_preference": float(preference[i]),
                                            "score": float(preference[i]), "score_name": "curve preference"}},
                              _tuning_png(curves, c)))
    found_of = upstream_of(model, [f"{layer}:{c}" for c in job.upstream], job.source, size, k=k) if job.upstream \
        else []   # one forward pass of the linearized model for the slice
    for c, found in zip(job.upstream, found_of):
        linked = [{"unit": r.unit, "weight": r.strength if r.sign == "+" else -r.strength} for r in found]
        for link in linked:
            channel = parse_unit(link["unit"]).channel
            done.downstream.setdefault(channel, []).append({"unit": f"{layer}:{c}", "weight": link["weight"]})
        row = {"layer": layer, "channel": c, "kind": UPSTREAM.name,
               "settings": {"units": linked, "layer": job.source, "k": k, "size": size}}
        if found:
            done.pngs.append((row, heatmap_png(found, f"{job.source} -> {layer}:{c}")))
        else:
            done.rows.append({**row, "png": None})
    return done


__all__ = ["Job", "Computed", "compute", "attribution_figure", "bars_png", "heatmap_png", "TUNING_ORIENTATIONS"]
