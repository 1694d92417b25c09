"""Synthetic stimuli as image tensors ``[N, 3, S, S]`` in ``[0, 1]``, anti-aliased, at any size.

Each family is a function of its parameters (one stimulus per row of broadcast parameter tensors) and is
listed in ``FAMILIES`` with its default parameter grid.  Lengths are given as fractions of the image side,
so the same call works at 64 px (the shapes organism) and 224 px (InceptionV1).

* ``curves(orientation, radius)`` — a circular arc through the image centre whose centre of curvature lies in
  direction ``orientation`` (degrees, counter-clockwise from +x, y up; the curve *opens* that way) at
  ``radius``; arc length ``length``.  This is the stimulus of the Curve Detectors paper's radial tuning curves.
* ``painted_curves(orientation, radius, colour, background, filled)`` — the same arcs in any RGB ``colour`` on any
  RGB ``background``, outlined or **filled** (the circular segment between the arc and its chord, so the arc is
  the boundary of a filled region): the paper's test of invariance to the fill and colour of a curve.
* ``lines(orientation)`` — a straight segment through the centre whose **normal** points at ``orientation``
  (so ``lines(θ)`` is the limit of ``curves(θ, r)`` as ``r`` grows).
* ``angles(orientation, opening)`` — a corner at the centre, its bisector pointing at ``orientation``.
* ``gratings(orientation, frequency)`` — sine gratings (cycles per image side) varying along ``orientation``.
* ``high_low(orientation, ratio)`` — a high/low-frequency boundary through the centre, the high-frequency side in
  the direction ``orientation`` (the High-Low Frequency Detectors paper's stimulus).
* ``centre_surround(centre, surround)`` — a coloured disc on a coloured background.

Example::

    >>> import torch
    >>> from mechscope.vision.families.stimuli import curves, lines
    >>> x = curves(torch.tensor([0.0, 90.0]), 0.2, size=32)
    >>> x.shape, float(x.min()), float(x.max())
    (torch.Size([2, 3, 32, 32]), 0.0, 1.0)
    >>> torch.allclose(lines(torch.tensor([0.0]), size=32), lines(torch.tensor([180.0]), size=32), atol=1e-5)
    True
    >>> from mechscope.vision.families.stimuli import painted_curves
    >>> red = painted_curves(torch.tensor([0.0]), 0.2, size=32, colour=(1.0, 0.0, 0.0), filled=True)
    >>> red[0, :, 0, 0].tolist(), torch.allclose(painted_curves(0.0, 0.2, size=32), curves(0.0, 0.2, size=32))
    ([1.0, 1.0, 1.0], True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mechscope.data import draw
from mechscope.errors import MechscopeError

__all__ = ["curves", "painted_curves", "lines", "angles", "gratings", "high_low", "centre_surround", "FAMILIES", "Family"]


def _t(value: torch.Tensor | float) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float32).reshape(-1)


def _compose(alpha: torch.Tensor, background: float, colour: float) -> torch.Tensor:
    img = background + (colour - background) * alpha
    return img[:, None].expand(-1, 3, -1, -1).clamp(0, 1).contiguous()


def curves(orientation: torch.Tensor | float, radius: torch.Tensor | float, *, size: int = 64,
           length: float = 0.45, width: float = 0.035, background: float = 1.0, colour: float = 0.0,
           max_half_span: float = 150.0) -> torch.Tensor:
    """Arcs through the centre, ``[N, 3, size, size]``.

    Args:
        orientation: degrees ``[N]`` (or a number), the direction of the centre of curvature.
        radius: radius of curvature as a fraction of ``size`` (``[N]`` or a number).
        length: arc length as a fraction of ``size`` (capped by ``max_half_span`` degrees on each side).
        width: stroke width as a fraction of ``size`` (at least one pixel).
        background, colour: grey levels of the background and the stroke (black on white by default).
    """
    o, r = torch.broadcast_tensors(_t(orientation), _t(radius))
    px, py = draw.pixel_grid(size)
    rad = r * size
    half = torch.clamp(length * size / (2 * rad), max=math.radians(max_half_span))
    c = torch.full_like(o, size / 2)
    d = draw.curve_through(px, py, c, c, torch.deg2rad(o), rad, half)
    return _compose(draw.stroke(d, torch.full_like(o, max(1.0, width * size))), background, colour)


def painted_curves(orientation: torch.Tensor | float, radius: torch.Tensor | float, *, size: int = 64,
                   colour: torch.Tensor | tuple[float, float, float] = (0.0, 0.0, 0.0),
                   background: torch.Tensor | tuple[float, float, float] = (1.0, 1.0, 1.0), filled: bool = False,
                   length: float = 0.45, width: float = 0.035, max_half_span: float = 150.0) -> torch.Tensor:
    """The arcs of ``curves`` (same ``orientation``, ``radius``, ``length``, ``width``, ``max_half_span``) in RGB
    ``colour`` on RGB ``background`` (``[3]`` or ``[N, 3]`` in ``[0, 1]``), ``[N, 3, size, size]``.

    ``filled=False`` strokes the arc (black on white equals ``curves``); ``filled=True`` paints the circular
    segment the arc bounds (inside its circle, on the arc's side of its chord), so the curve appears as the
    edge of a filled region rather than as a line.
    """
    o, r = torch.broadcast_tensors(_t(orientation), _t(radius))
    col = torch.as_tensor(colour, dtype=torch.float32).reshape(-1, 3)
    bg = torch.as_tensor(background, dtype=torch.float32).reshape(-1, 3)
    if float(torch.cat([col, bg]).min()) < 0 or float(torch.cat([col, bg]).max()) > 1:
        raise MechscopeError("painted_curves: colour and background are RGB values in [0, 1]")
    col, bg = col.expand(len(o), 3) if len(col) == 1 else col, bg.expand(len(o), 3) if len(bg) == 1 else bg
    if len(col) != len(o) or len(bg) != len(o):
        raise MechscopeError(f"painted_curves: {len(o)} curves but {len(col)} colours and {len(bg)} backgrounds "
                             "(give one, or one per curve)")
    px, py = draw.pixel_grid(size)
    rad = r * size
    half = torch.clamp(length * size / (2 * rad), max=math.radians(max_half_span))
    c = torch.full_like(o, size / 2)
    if filled:
        th = torch.deg2rad(o).reshape(-1, 1, 1)
        cx, cy = c.reshape(-1, 1, 1) + rad.reshape(-1, 1, 1) * torch.cos(th), \
            c.reshape(-1, 1, 1) - rad.reshape(-1, 1, 1) * torch.sin(th)
        # towards the arc's midpoint (the image centre) from the centre of curvature: -(cos th, -sin th)
        along = -(px - cx) * torch.cos(th) + (py - cy) * torch.sin(th)
        chord = rad.reshape(-1, 1, 1) * torch.cos(half).reshape(-1, 1, 1) - along  # <= 0 beyond the chord
        alpha = draw.fill(torch.maximum(draw.circle_sdf(px, py, cx.reshape(-1), cy.reshape(-1), rad), chord))
    else:
        d = draw.curve_through(px, py, c, c, torch.deg2rad(o), rad, half)
        alpha = draw.stroke(d, torch.full_like(o, max(1.0, width * size)))
    img = bg[:, :, None, None].expand(-1, -1, size, size)
    return draw.paint(img, alpha, col).clamp(0, 1).contiguous()


def lines(orientation: torch.Tensor | float, *, size: int = 64, length: float = 0.45, width: float = 0.035,
          background: float = 1.0, colour: float = 0.0) -> torch.Tensor:
    """Straight segments through the centre whose normal points at ``orientation`` degrees, ``[N, 3, S, S]``."""
    o = torch.deg2rad(_t(orientation))
    px, py = draw.pixel_grid(size)
    half = length * size / 2
    tx, ty = -torch.sin(o) * half, -torch.cos(o) * half
    c = size / 2
    d = draw.segment_distance(px, py, c - tx, c - ty, c + tx, c + ty)
    return _compose(draw.stroke(d, torch.full_like(o, max(1.0, width * size))), background, colour)


def angles(orientation: torch.Tensor | float, opening: torch.Tensor | float, *, size: int = 64,
           length: float = 0.3, width: float = 0.035, background: float = 1.0, colour: float = 0.0) -> torch.Tensor:
    """Two strokes from the centre (a corner), bisector pointing at ``orientation`` degrees, ``opening``
    degrees apart, each ``length`` of the side long; ``[N, 3, S, S]``."""
    o, op = torch.broadcast_tensors(torch.deg2rad(_t(orientation)), torch.deg2rad(_t(opening)))
    px, py = draw.pixel_grid(size)
    c = torch.full_like(o, size / 2)
    arms = [draw.segment_distance(px, py, c, c, c + length * size * torch.cos(a), c - length * size * torch.sin(a))
            for a in (o - op / 2, o + op / 2)]
    return _compose(draw.stroke(torch.minimum(*arms), torch.full_like(o, max(1.0, width * size))), background, colour)


def _wave(proj: torch.Tensor, frequency: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    return torch.sin(2 * math.pi * frequency.view(-1, 1, 1) * proj + phase.view(-1, 1, 1))


def _projection(orientation: torch.Tensor, size: int) -> torch.Tensor:
    """Signed distance from the centre along direction ``orientation`` (radians), in image sides ``[N, S, S]``."""
    px, py = draw.pixel_grid(size)
    o = orientation.view(-1, 1, 1)
    return ((px - size / 2) * torch.cos(o) - (py - size / 2) * torch.sin(o)) / size


def gratings(orientation: torch.Tensor | float, frequency: torch.Tensor | float, *, size: int = 64,
             phase: torch.Tensor | float = 0.0, contrast: float = 1.0) -> torch.Tensor:
    """Sine gratings varying along ``orientation`` degrees, ``frequency`` cycles per image side, grey mean 0.5,
    amplitude ``contrast / 2``; ``[N, 3, S, S]``."""
    o, f, ph = torch.broadcast_tensors(torch.deg2rad(_t(orientation)), _t(frequency), torch.deg2rad(_t(phase)))
    img = 0.5 + 0.5 * contrast * _wave(_projection(o, size), f, ph)
    return img[:, None].expand(-1, 3, -1, -1).clamp(0, 1).contiguous()


def high_low(orientation: torch.Tensor | float, ratio: torch.Tensor | float = 8.0, *, size: int = 64,
             low_frequency: float = 1.5, contrast: float = 0.8) -> torch.Tensor:
    """High-low frequency boundaries through the centre: a grating of ``low_frequency * ratio`` cycles per side
    on the half-plane ``orientation`` degrees points into, one of ``low_frequency`` cycles on the other (both
    varying along the boundary's normal, same mean and contrast); ``[N, 3, S, S]``."""
    o, r = torch.broadcast_tensors(torch.deg2rad(_t(orientation)), _t(ratio))
    proj = _projection(o, size)
    zero = torch.zeros_like(o)
    high = _wave(proj, low_frequency * r, zero)
    low = _wave(proj, torch.full_like(o, low_frequency), zero)
    side = draw.fill(-proj * size)  # 1 on the side the orientation points into, anti-aliased
    img = 0.5 + 0.5 * contrast * (side * high + (1 - side) * low)
    return img[:, None].expand(-1, 3, -1, -1).clamp(0, 1).contiguous()


def centre_surround(centre: torch.Tensor, surround: torch.Tensor, *, size: int = 64,
                    radius: float = 0.15) -> torch.Tensor:
    """A disc of RGB colour ``centre [N, 3]`` on a background of ``surround [N, 3]`` (anti-aliased edge,
    ``radius`` of the side); ``[N, 3, S, S]``."""
    centre, surround = torch.as_tensor(centre, dtype=torch.float32), torch.as_tensor(surround, dtype=torch.float32)
    centre, surround = torch.broadcast_tensors(centre.reshape(-1, 3), surround.reshape(-1, 3))
    px, py = draw.pixel_grid(size)
    c = torch.full((len(centre),), size / 2)
    alpha = draw.fill(draw.circle_sdf(px, py, c, c, torch.full_like(c, radius * size)))
    img = surround[:, :, None, None].expand(-1, -1, size, size)
    return draw.paint(img, alpha, centre).clamp(0, 1).contiguous()


@dataclass(frozen=True)
class Family:
    """A stimulus family: its function and default grid (name -> values)."""

    name: str
    make: Callable[..., torch.Tensor]
    grid: dict[str, tuple[float, ...]]


FAMILIES: dict[str, Family] = {
    "curves": Family("curves", curves, {"orientation": tuple(float(a) for a in range(0, 360, 5)),
                                        "radius": (0.08, 0.12, 0.18, 0.27, 0.4)}),
    "lines": Family("lines", lines, {"orientation": tuple(float(a) for a in range(0, 180, 5))}),
    "angles": Family("angles", angles, {"orientation": tuple(float(a) for a in range(0, 360, 10)),
                                        "opening": (45.0, 60.0, 90.0, 120.0, 150.0)}),
    "gratings": Family("gratings", gratings, {"orientation": tuple(float(a) for a in range(0, 180, 10)),
                                              "frequency": (2.0, 4.0, 8.0, 16.0)}),
    "high_low": Family("high_low", high_low, {"orientation": tuple(float(a) for a in range(0, 360, 10)),
                                              "ratio": (4.0, 8.0, 12.0)}),
}
