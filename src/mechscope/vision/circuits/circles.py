"""Circle detectors read from curve detectors: a score over expanded weights, its shuffled null, ring stimuli.

The Curve Detectors paper's "feature use" evidence: downstream units that read curve detectors of many
orientations at positions around a circle.  Everything here is a pure function of tensors; the model-level search
(which detectors, which expanded weights) is ``circle_units.py``.

**Convention.**  A curve detector's preferred orientation ``θ`` is the direction of its stimulus' centre of
curvature (``stimuli.curves``: degrees counter-clockwise from +x, y up; the curve *opens* towards ``θ``).  A
circle centred on a downstream unit passes a position at offset angle ``φ`` (same convention, y up, measured from
the unit's centre) with its centre of curvature back at the unit: the detector it drives there prefers
``θ = φ + 180°``.  (A unit wired for ``θ = φ`` would read curves opening *away* from its centre: a four-leaf /
"anti-circle" pattern, which scores ``-1``.)

**Score.**  ``weights [U, D, h, w]`` are the expanded weights from ``D`` detectors (orientations ``[D]``) at every
offset of an ``h x w`` grid to ``U`` units whose centre is ``centre`` (row, col; default the grid's middle).  Only
the positive part counts (excitation).  Offsets closer than ``min_radius`` cells to the centre have no angle and
are left out; the rest fall into ``sectors`` equal sectors of offset angle, centred on ``0, 360/K, ...``.  In each
sector the **alignment** is the weight-averaged ``cos(θ_d - φ - 180°)`` over detectors and offsets (1: all its
positive weight comes from detectors oriented for the circle).  The **circle score** is the mean alignment over
all ``K`` sectors, a sector without positive weight counting 0: high only when the weight agrees with the circle
*all the way round*, so a unit reading one arc (a curve-detector continuation) scores low.  ``coverage`` counts
the sectors whose alignment is at least 0.5.

**Null.**  ``shuffled_orientations`` permutes the detectors' orientation labels (the spatial pattern of weights is
kept); ``null_test`` scores every unit under each permutation and calls a unit a circle unit when its score is
above the ``quantile`` (0.99) of its own null.

**Stimuli.**  ``rings`` (full circles), ``arcs`` (pieces of the same circles) and ``tangents`` (straight segments
tangent to them) centred on any point, black on white like ``stimuli.curves``.

Example::

    >>> import torch
    >>> theta = torch.arange(8) * 45.0                        # 8 detectors, one per 45 degrees
    >>> w = torch.zeros(1, 8, 3, 3)
    >>> for d, (r, c) in enumerate([(1, 2), (0, 2), (0, 1), (0, 0), (1, 0), (2, 0), (2, 1), (2, 2)]):
    ...     w[0, (d + 4) % 8, r, c] = 1.0                     # offset at angle 45*d reads orientation 45*d + 180
    >>> s = circle_scores(w, theta)
    >>> round(float(s[0, 0]), 3), circle_details(w[0], theta).coverage
    (1.0, 8)
    >>> round(float(circle_scores(w, (theta + 180) % 360)[0, 0]), 3)   # the anti-circle
    -1.0
    >>> test = null_test(w, theta, draws=100, seed=0)
    >>> bool(test.significant[0]), test.null.shape
    (True, torch.Size([1, 100]))
    >>> rings(torch.tensor([0.2]), (16.0, 16.0), size=32).shape
    torch.Size([1, 3, 32, 32])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mechscope.data import draw
from mechscope.errors import MechscopeError

__all__ = ["offsets", "circle_scores", "circle_details", "CircleDetails", "shuffled_orientations", "NullTest",
           "null_test", "rings", "arcs", "tangents"]


def offsets(h: int, w: int, centre: tuple[float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Offset angle ``φ`` (degrees in ``[0, 360)``, y up) and distance ``ρ`` (cells) of every cell of an
    ``h x w`` grid from ``centre`` (row, col; default the middle), each ``[h, w]``."""
    cr, cc = ((h - 1) / 2, (w - 1) / 2) if centre is None else centre
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
    dx, dy = cols - cc, -(rows - cr)
    return torch.rad2deg(torch.atan2(dy, dx)) % 360.0, torch.hypot(dx, dy)


def _check(weights: torch.Tensor, orientations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if weights.dim() != 4:
        raise MechscopeError(f"weights must be [units, detectors, h, w], got shape {tuple(weights.shape)}")
    o = torch.as_tensor(orientations, dtype=torch.float32)
    o = o[None] if o.dim() == 1 else o
    if o.dim() != 2 or o.shape[1] != weights.shape[1]:
        raise MechscopeError(f"orientations must be [detectors] or [draws, detectors] with {weights.shape[1]} "
                             f"detectors, got shape {tuple(o.shape)}")
    return weights.detach().float().clamp_min(0), o


def _sector_parts(weights: torch.Tensor, orientations: torch.Tensor, centre: tuple[float, float] | None,
                  sectors: int, min_radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned weight per sector ``[U, P, K]`` and positive weight per sector ``[U, K]``."""
    wp, o = _check(weights, orientations)
    if sectors < 1:
        raise MechscopeError(f"sectors must be >= 1, got {sectors}")
    phi, rho = offsets(wp.shape[2], wp.shape[3], centre)
    keep = (rho >= min_radius).flatten()
    phi = torch.deg2rad(phi.flatten()[keep])                                         # [O]
    wp = wp.flatten(2)[:, :, keep]                                                   # [U, D, O]
    width = 360.0 / sectors
    sector = (torch.round(torch.rad2deg(phi) / width).long() % sectors)              # [O]
    onehot = torch.nn.functional.one_hot(sector, sectors).float()                    # [O, K]
    t = torch.deg2rad(o)
    x = torch.einsum("udo,pd->upo", wp, torch.cos(t))
    y = torch.einsum("udo,pd->upo", wp, torch.sin(t))
    aligned = -(x * torch.cos(phi) + y * torch.sin(phi))                             # cos(θ - φ - 180°)
    return aligned @ onehot, wp.sum(1) @ onehot


def circle_scores(weights: torch.Tensor, orientations: torch.Tensor, *, centre: tuple[float, float] | None = None,
                  sectors: int = 8, min_radius: float = 0.5) -> torch.Tensor:
    """Circle score (module docstring) of each unit under each row of orientations.

    Args:
        weights: ``[U, D, h, w]`` expanded weights from ``D`` detectors to ``U`` units (negative parts ignored).
        orientations: ``[D]`` or ``[P, D]`` preferred orientations in degrees (``P`` labelings, e.g. shuffles).
    Returns:
        ``[U, P]`` scores in ``[-1, 1]``.
    """
    aligned, total = _sector_parts(weights, orientations, centre, sectors, min_radius)
    floor = 1e-6 * total.sum(1, keepdim=True).clamp_min(1e-12)
    has = total > floor                                                              # [U, K]
    per = torch.where(has[:, None], aligned / total.clamp_min(1e-12)[:, None], torch.zeros_like(aligned))
    return per.sum(2) / sectors


@dataclass(frozen=True)
class CircleDetails:
    """One unit's reading: ``score``, per-sector ``alignment [K]`` (0 where a sector has no positive weight),
    ``coverage`` (sectors with alignment >= 0.5), ``orientations`` (how many of ``sectors`` orientation sectors
    hold detectors carrying >= 5 % of the circle-aligned weight) and ``arrows``: for each offset, the
    weight-averaged detector orientation (degrees) and the positive weight there, ``[h, w]`` each."""

    score: float
    alignment: list[float]
    coverage: int
    orientations: int
    arrow_angle: torch.Tensor
    arrow_weight: torch.Tensor


def circle_details(weights: torch.Tensor, orientations: torch.Tensor, *, centre: tuple[float, float] | None = None,
                   sectors: int = 8, min_radius: float = 0.5) -> CircleDetails:
    """``CircleDetails`` of one unit from ``weights [D, h, w]`` and ``orientations [D]`` (degrees)."""
    w4 = weights[None]
    aligned, total = _sector_parts(w4, orientations, centre, sectors, min_radius)
    per = torch.where(total[0] > 1e-12, aligned[0, 0] / total[0].clamp_min(1e-12), torch.zeros_like(total[0]))
    wp, o = _check(w4, orientations)
    wp, t = wp[0], torch.deg2rad(o[0])
    phi, rho = offsets(wp.shape[1], wp.shape[2], centre)
    good = torch.cos(t[:, None, None] - torch.deg2rad(phi)[None] - math.pi).clamp_min(0)   # [D, h, w]
    share = (wp * good * (rho >= min_radius)).sum((1, 2))
    share = share / share.sum().clamp_min(1e-12)
    osector = (torch.round(o[0] / (360.0 / sectors)).long() % sectors)
    held = {int(s) for s, v in zip(osector, share, strict=True) if float(v) >= 0.05}
    vx = (wp * torch.cos(t)[:, None, None]).sum(0)
    vy = (wp * torch.sin(t)[:, None, None]).sum(0)
    return CircleDetails(float(per.sum() / sectors), [round(float(a), 4) for a in per],
                         int((per >= 0.5).sum()), len(held), torch.rad2deg(torch.atan2(vy, vx)) % 360.0, wp.sum(0))


def shuffled_orientations(orientations: torch.Tensor, draws: int, seed: int = 0) -> torch.Tensor:
    """``[draws, D]``: ``draws`` seeded random permutations of ``orientations [D]``."""
    o = torch.as_tensor(orientations, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([o[torch.randperm(len(o), generator=gen)] for _ in range(draws)])


@dataclass(frozen=True)
class NullTest:
    """``scores [U]`` with the true orientations, ``null [U, draws]`` with shuffled ones, ``threshold [U]`` (the
    ``quantile`` of each unit's null) and ``significant [U]`` (score above it)."""

    scores: torch.Tensor
    null: torch.Tensor
    threshold: torch.Tensor
    significant: torch.Tensor
    quantile: float

    @property
    def z(self) -> torch.Tensor:
        """``(score - null mean) / null std`` per unit ``[U]``."""
        return (self.scores - self.null.mean(1)) / self.null.std(1).clamp_min(1e-12)


def null_test(weights: torch.Tensor, orientations: torch.Tensor, *, draws: int = 200, seed: int = 0,
              quantile: float = 0.99, centre: tuple[float, float] | None = None, sectors: int = 8,
              min_radius: float = 0.5) -> NullTest:
    """Circle scores of ``weights [U, D, h, w]`` against ``draws`` shuffles of ``orientations [D]`` (the same
    shuffles for every unit)."""
    if draws < 1:
        raise MechscopeError(f"draws must be >= 1, got {draws}")
    o = torch.as_tensor(orientations, dtype=torch.float32)
    both = torch.cat([o[None], shuffled_orientations(o, draws, seed)])
    s = circle_scores(weights, both, centre=centre, sectors=sectors, min_radius=min_radius)
    scores, null = s[:, 0], s[:, 1:]
    threshold = torch.quantile(null, quantile, dim=1)
    return NullTest(scores, null, threshold, scores > threshold, quantile)


# ---- stimuli -----------------------------------------------------------------------------------------------------


def _ink(distance: torch.Tensor, size: int, width: float) -> torch.Tensor:
    alpha = draw.stroke(distance, torch.full((distance.shape[0],), max(1.0, width * size)))
    return (1.0 - alpha)[:, None].expand(-1, 3, -1, -1).clamp(0, 1).contiguous()


def rings(radii: torch.Tensor, centre: tuple[float, float], *, size: int = 64, width: float = 0.035) -> torch.Tensor:
    """Full circles of ``radii [R]`` (fractions of ``size``) centred at ``centre`` (row, col in pixels, pixel
    ``i`` spanning ``[i, i+1)``), black strokes ``width`` of the side on white: ``[R, 3, size, size]``."""
    r = torch.as_tensor(radii, dtype=torch.float32).reshape(-1) * size
    px, py = draw.pixel_grid(size)
    cy, cx = (torch.full_like(r, float(v)) for v in centre)
    return _ink(draw.circle_sdf(px, py, cx, cy, r).abs(), size, width)


def _grid(radii: torch.Tensor, mids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.as_tensor(radii, dtype=torch.float32).reshape(-1)
    m = torch.as_tensor(mids, dtype=torch.float32).reshape(-1)
    rr, mm = torch.meshgrid(r, m, indexing="ij")
    return rr.flatten(), mm.flatten()


def arcs(radii: torch.Tensor, mids: torch.Tensor, span: float, centre: tuple[float, float], *, size: int = 64,
         width: float = 0.035) -> torch.Tensor:
    """Arcs of ``span`` degrees of the circles of ``rings`` (every radius x every midpoint angle ``mids``,
    degrees y up, radius-major): ``[R * M, 3, size, size]``."""
    r, m = _grid(radii, mids)
    px, py = draw.pixel_grid(size)
    cy, cx = (torch.full_like(r, float(v)) for v in centre)
    d = draw.arc_distance(px, py, cx, cy, r * size, torch.deg2rad(m), torch.full_like(r, math.radians(span / 2)))
    return _ink(d, size, width)


def tangents(radii: torch.Tensor, mids: torch.Tensor, span: float, centre: tuple[float, float], *,
             size: int = 64, width: float = 0.035) -> torch.Tensor:
    """Straight segments as long as the arcs of ``arcs``, tangent to the same circles at their midpoints:
    ``[R * M, 3, size, size]``."""
    r, m = _grid(radii, mids)
    px, py = draw.pixel_grid(size)
    a, rad = torch.deg2rad(m), r * size
    x0, y0 = float(centre[1]) + rad * torch.cos(a), float(centre[0]) - rad * torch.sin(a)
    half = rad * math.radians(span) / 2
    tx, ty = -torch.sin(a) * half, -torch.cos(a) * half          # along the tangent, pixel coordinates
    return _ink(draw.segment_distance(px, py, x0 - tx, y0 - ty, x0 + tx, y0 + ty), size, width)
