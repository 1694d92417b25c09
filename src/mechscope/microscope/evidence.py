"""The Microscope's per-unit evidence of an image model, computed as plain data (rows + PNG bytes) so that it can
run in a worker process and be written to the store by the parent (``mechscope.microscope.build``).

``compute(model, job, ...)`` does one ``Job``: a slice of one layer's units and the kinds of evidence each needs
(feature visualization, its negative, a diversity set, radial tuning curve, upstream links).  It returns a
``Computed``: ``pngs`` (``(row, png_bytes)``: figure rows whose ``png`` the writer fills in), ``rows`` (figure
rows without a PNG) and ``downstream`` (``{upstream channel: [{"unit", "weight"}]}``, the reverse links the writer
merges into the upstream layer's ``downstream`` rows).  Rows carry no ``model`` key; the writer adds it.

``attribution_figure`` draws the attribution of a unit's top dataset example (``vision.attribution``).  The
figures are drawn straight to pixels (``mechscope.raster``): the build makes thousands of them.

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

import numpy as np
import torch
from torch import nn

from mechscope import raster
from mechscope.images import grid, png_bytes, to_pil
from mechscope.microscope.kinds import FEATVIS, FEATVIS_DIVERSITY, FEATVIS_NEGATIVE, TUNING, UPSTREAM
from mechscope.microscope.options import Evidence
from mechscope.units import parse_unit
from mechscope.vision.circuits.graph import upstream_of
from mechscope.vision.featvis.render import render_units
from mechscope.vision.families.tuning import radial_tuning_curve

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
    """Kernels ``[kh, kw]`` of ``vision.circuits.upstream`` rows side by side, one shared colour scale symmetric
    about 0 (``raster.heatmaps``)."""
    kernels = torch.stack([r.weights.detach().float().cpu() for r in rows])  # [k, h, w]
    return raster.png(raster.heatmaps(kernels.numpy(), title=title))


def bars_png(units: Sequence[dict[str, Any]], title: str) -> bytes:
    """Bar chart of the signed weights of ``units`` (red excitatory, blue inhibitory; ``raster.bar_chart``)."""
    return raster.png(raster.bar_chart([u["unit"] for u in units], [float(u["weight"]) for u in units], title=title))


def attribution_figure(attr: Any, image: torch.Tensor, k: int = 8) -> bytes:
    """The example image with the unit's position, the spatial attribution map and the top ``k`` source channels.

    ``attr``: a one-image ``vision.attribution.Attribution``; ``image``: its input ``[3, H, W]`` in ``[0, 1]``.
    """
    pixels = np.asarray(to_pil(image))   # [H, W, 3] uint8
    rect = None
    if attr.positions is not None:  # the unit's cell, in input pixels (x = rows, y = columns)
        gx, gy = attr.unit_grid
        h, w = attr.input_size
        x, y = (int(v) for v in attr.positions[0])
        rect = (y * w / gy, x * h / gx, (y + 1) * w / gy, (x + 1) * h / gx)
    top = attr.top(k, 0)
    return raster.png(raster.tile([
        raster.image_panel(pixels, title=f"top example · {attr.unit} = {float(attr.total[0]):.3g}", rect=rect),
        raster.heat_panel(attr.spatial[0].detach().float().cpu().numpy(), title=f"{attr.unit} ← {attr.source_layer}",
                          extent=tuple(attr.input_size), xlabel="y", ylabel="x"),
        raster.hbar_chart([f"{attr.source_layer}:{c}" for c, _ in top], [v for _, v in top],
                          title=f"top contributors to {attr.unit}", xlabel="contribution (activation × gradient)"),
    ], gap=12))


def _tuning_png(tuning: Any, channel: int) -> bytes:
    """Polar plot of one channel's curve and line tuning, its preferred orientation marked."""
    i = tuning.channels.index(channel)
    curves = [("curves", tuning.responses[i].tolist()), ("lines", tuning.lines[i].tolist())]
    return raster.png(raster.polar_curves(tuning.orientations.tolist(), curves, title=f"{tuning.layer}:{channel}",
                                          mark=float(tuning.preferred[i])))


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
