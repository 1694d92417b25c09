"""Automatic finders: rank the units of a layer as curve, line or high-low frequency detectors by their tuning.

* curve detectors — ``tuning.curve_detectors`` on a ``radial_tuning_curve`` (one-sided, curves beat lines);
* line detectors — from the same measurement: the best line response beats the best curve response
  (``line_preference = 1 / curve_preference``), and the tuning over line orientation is peaked
  (``line_selectivity``: 1 - circular variance of the responses to lines over 180°, doubled angles);
* high-low frequency detectors — ``high_low_tuning``: responses to high/low-frequency boundaries at
  ``n_orientations`` orientations (``stimuli.high_low``) against the best response to the uniform textures on
  either side (``stimuli.gratings`` at the low and the high frequency, every orientation): a detector answers the
  boundary at least ``min_ratio`` times as strongly as any uniform texture, one-sidedly.

``frequency_preference`` scores how much each unit of a layer prefers fine to coarse gratings (the inputs that a
high-low detector's two NMF factors should sort into; ``nmf.factor_offset`` measures on which side each lies).

``classify_units`` returns every unit's kind and scores in one JSON-ready table, ``group_by_orientation`` puts the
units of one kind into sectors of the circle, and ``in_sigma`` reports responses in standard deviations of the
unit's dataset distribution (``vision/stats.py``) when statistics exist.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from mechscope.vision.families.detectors import high_low_tuning
    >>> net = nn.Sequential(nn.Conv2d(3, 2, 5, padding=2), nn.ReLU())
    >>> hl = high_low_tuning(net, "1", n_orientations=8, size=16)
    >>> hl.responses.shape, hl.uniform.shape
    (torch.Size([2, 8]), torch.Size([2]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.units import parse, validate
from mechscope.vision.families import stimuli
from mechscope.vision.families.tuning import RadialTuning, _position, _read, curve_detectors


@dataclass(frozen=True)
class HighLowTuning:
    """Responses ``[C, O]`` to high-low boundaries at ``orientations`` (degrees: the direction of the high side),
    the best response ``uniform [C]`` to the uniform textures, read at ``position``."""

    layer: str
    channels: list[int]
    orientations: torch.Tensor
    responses: torch.Tensor
    uniform: torch.Tensor
    position: tuple[int, int]

    @property
    def preferred(self) -> torch.Tensor:
        return self.orientations[self.responses.argmax(1)]

    @property
    def boundary_preference(self) -> torch.Tensor:
        """Best boundary response over best uniform-texture response ``[C]``."""
        return self.responses.max(1).values / self.uniform.clamp_min(1e-6)

    @property
    def opposite(self) -> torch.Tensor:
        """Response with the high side the other way over the peak ``[C]`` (near 0: one-sided)."""
        n = self.responses.shape[1]
        peak, arg = self.responses.max(1)
        return self.responses.gather(1, ((arg + n // 2) % n)[:, None])[:, 0] / peak.clamp_min(1e-12)


@torch.no_grad()
def high_low_tuning(model: nn.Module, layer: str, channels: Sequence[int] | None = None, *,
                    n_orientations: int = 72, ratio: float = 8.0, low_frequency: float = 1.5, size: int = 64,
                    position: str | tuple[int, int] = "max", batch_size: int = 256) -> HighLowTuning:
    """Tuning of ``channels`` (default all) of ``layer`` to high-low frequency boundaries (see the module)."""
    name = parse(layer).layer
    validate(model, name)
    orientations = torch.arange(n_orientations, dtype=torch.float32) * (360.0 / n_orientations)
    was_training = model.training
    model.eval()
    try:
        maps = _read(model, name, stimuli.high_low(orientations, ratio, size=size, low_frequency=low_frequency),
                     batch_size)
        flat = orientations[: max(1, n_orientations // 2)]
        textures = torch.cat([stimuli.gratings(flat, f, size=size, contrast=0.8)
                              for f in (low_frequency, low_frequency * ratio)])
        tex = _read(model, name, textures, batch_size)
    finally:
        model.train(was_training)
    chans = list(range(maps.shape[1])) if channels is None else list(channels)
    bad = [c for c in chans if not 0 <= c < maps.shape[1]]
    if bad:
        raise MechscopeError(f"channels {bad} out of range: {name} has {maps.shape[1]} channels")
    x, y = _position(maps[:, chans], position)
    return HighLowTuning(name, chans, orientations, maps[:, chans, x, y].T.contiguous(),
                         tex[:, chans, x, y].max(0).values, (x, y))


@torch.no_grad()
def frequency_preference(model: nn.Module, layer: str, *, low: float = 1.5, high: float = 12.0, size: int = 64,
                         orientations: int = 8, phases: int = 4, border: int = 4,
                         batch_size: int = 256) -> torch.Tensor:
    """``(r_high - r_low) / (r_high + r_low)`` per unit of ``layer`` (``[C]``, in ``[-1, 1]`` for non-negative
    responses): ``r`` is the unit's mean response over its map (``border`` positions dropped on each side) to
    gratings (``stimuli.gratings``, contrast 0.8) at ``high`` or ``low`` cycles per image side, averaged over
    ``orientations`` x ``phases``.  +1: answers only fine texture; -1: only coarse."""
    name = parse(layer).layer
    validate(model, name)
    o = torch.arange(orientations, dtype=torch.float32) * (180.0 / orientations)
    p = torch.arange(phases, dtype=torch.float32) * (360.0 / phases)
    grid_o, grid_p = (g.flatten() for g in torch.meshgrid(o, p, indexing="ij"))
    r = []
    was_training = model.training
    model.eval()
    try:
        for f in (low, high):
            maps = _read(model, name, stimuli.gratings(grid_o, f, phase=grid_p, size=size, contrast=0.8), batch_size)
            if border and min(maps.shape[-2:]) > 2 * border:
                maps = maps[..., border:-border, border:-border]
            r.append(maps.mean((0, 2, 3)))
    finally:
        model.train(was_training)
    return (r[1] - r[0]) / (r[1].abs() + r[0].abs()).clamp_min(1e-12)


def line_selectivity(tuning: RadialTuning) -> torch.Tensor:
    """1 - circular variance of the responses to lines over doubled angles ``[C]`` (0 flat, 1 one orientation)."""
    r = tuning.lines.clamp_min(0)
    z = torch.polar(torch.ones_like(tuning.orientations), torch.deg2rad(2 * tuning.orientations))
    return ((r.to(torch.complex64) * z).sum(1).abs() / r.sum(1).clamp_min(1e-12)).float()


def classify_units(curves: RadialTuning, high_low: HighLowTuning | None = None, *, min_line_preference: float = 1.2,
                   min_line_selectivity: float = 0.3, min_ratio: float = 1.5, max_opposite: float = 0.5,
                   floor: float = 0.1, curve_criteria: dict | None = None) -> list[dict]:
    """Every unit's kind (``curve``, ``high_low``, ``line`` or ``other``; the first that applies, in that order;
    a high-low detector must be one-sided, which a line detector answering both directions is not)
    with its scores and preferred orientation; units whose peak is below ``floor`` x the layer's strongest are
    ``other``.  ``curve_criteria`` is passed to ``tuning.curve_detectors``."""
    if high_low is not None and (high_low.channels != curves.channels or high_low.layer != curves.layer):
        raise MechscopeError("the curve and high-low tunings must cover the same layer and channels")
    curve_units = set(curve_detectors(curves, **(curve_criteria or {})).units)
    line_sel = line_selectivity(curves)
    peak = torch.maximum(curves.responses.max(1).values, curves.lines.max(1).values)
    strong = peak > floor * float(peak.max())
    rows = []
    for i, c in enumerate(curves.channels):
        row = {"unit": f"{curves.layer}:{c}", "channel": c, "curve_preference": round(float(curves.curve_preference[i]), 4),
               "line_selectivity": round(float(line_sel[i]), 4)}
        kind, preferred = "other", None
        if high_low is not None:
            row["boundary_preference"] = round(float(high_low.boundary_preference[i]), 4)
        if c in curve_units:
            kind, preferred = "curve", float(curves.preferred[i])
        elif (high_low is not None and float(high_low.boundary_preference[i]) >= min_ratio
              and float(high_low.opposite[i]) <= max_opposite and float(high_low.responses[i].max()) > 0):
            kind, preferred = "high_low", float(high_low.preferred[i])   # one-sided: a line unit is not
        elif (bool(strong[i]) and 1 / float(curves.curve_preference[i]) >= min_line_preference
              and float(line_sel[i]) >= min_line_selectivity):
            kind, preferred = "line", float(curves.orientations[curves.lines[i].argmax()]) % 180
        rows.append({**row, "kind": kind, "preferred_deg": preferred})
    return rows


def group_by_orientation(rows: list[dict], kind: str, sectors: int = 8) -> dict[int, list[str]]:
    """The units of ``kind`` in ``rows`` (``classify_units``) by sector of preferred orientation
    (``sector * 360 / sectors`` degrees onwards)."""
    out: dict[int, list[str]] = {}
    for r in rows:
        if r["kind"] == kind:
            out.setdefault(int(r["preferred_deg"] % 360 // (360 / sectors)), []).append(r["unit"])
    return dict(sorted(out.items()))


def in_sigma(responses: torch.Tensor, channels: Sequence[int], stats) -> torch.Tensor:
    """``responses [C, ...]`` of ``channels`` in standard deviations of each unit's dataset distribution
    (``stats``: a ``UnitStats`` of the same layer, e.g. from ``activation_stats`` or a scan)."""
    return torch.stack([torch.as_tensor(stats.sigma(c, responses[i])) for i, c in enumerate(channels)])
