"""Synthetic stimuli as image tensors ``[N, 3, S, S]`` in ``[0, 1]``, anti-aliased, at any size.

Each family is a function of its parameters (one stimulus per row of broadcast parameter tensors) and is
listed in ``FAMILIES`` with its default parameter grid.  Lengths are given as fractions of the image side,
so the same call works at 64 px (the shapes organism) and 224 px (InceptionV1).

* ``curves(orientation, radius)`` — a circular arc through the image centre whose centre of curvature lies in
  direction ``orientation`` (degrees, counter-clockwise from +x, y up; the curve *opens* that way) at
  ``radius``; arc length ``length``.  This is the stimulus of the Curve Detectors paper's radial tuning curves.
* ``lines(orientation)`` — a straight segment through the centre whose **normal** points at ``orientation``
  (so ``lines(θ)`` is the limit of ``curves(θ, r)`` as ``r`` grows).

Example::

    >>> import torch
    >>> from mechscope.vision.stimuli import curves, lines
    >>> x = curves(torch.tensor([0.0, 90.0]), 0.2, size=32)
    >>> x.shape, float(x.min()), float(x.max())
    (torch.Size([2, 3, 32, 32]), 0.0, 1.0)
    >>> torch.allclose(lines(torch.tensor([0.0]), size=32), lines(torch.tensor([180.0]), size=32), atol=1e-5)
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mechscope.data import draw

__all__ = ["curves", "lines", "FAMILIES", "Family"]


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
}
