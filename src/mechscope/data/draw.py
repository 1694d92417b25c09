"""Anti-aliased drawing of strokes and filled shapes from distance fields, vectorised over a batch.

Every primitive returns a distance in pixels at every pixel centre, ``[B, H, W]``, for ``B`` shapes at once
(parameters are ``[B]`` tensors); ``stroke`` and ``fill`` turn a distance into coverage in ``[0, 1]`` with a
one-pixel box filter (anti-aliasing), and ``paint`` composites a coloured coverage onto images.

Angles are in radians, counter-clockwise with y pointing **up** (mathematical convention), so the direction
``a`` is the screen vector ``(cos a, -sin a)`` in ``(x = column, y = row)`` pixel coordinates.

``curve_through(x, y, orientation, radius, half_span)`` places the arc used throughout mechscope's curve
stimuli: a circular arc that passes through ``(x, y)`` with its centre of curvature at distance ``radius`` in
the direction ``orientation`` (the way the curve opens is the opposite direction), spanning ``2 * half_span``.

Example::

    >>> import torch
    >>> from mechscope.data.draw import pixel_grid, curve_through, stroke
    >>> px, py = pixel_grid(32)
    >>> b = torch.ones(1)
    >>> d = curve_through(px, py, 16 * b, 16 * b, 0 * b, 8 * b, 1.0 * b)  # centre of curvature to the right
    >>> alpha = stroke(d, 2 * b)
    >>> alpha.shape, float(alpha[0, 16, 16]), float(alpha[0, 16, 28])     # row 16: on the curve, off it
    (torch.Size([1, 32, 32]), 1.0, 0.0)
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "pixel_grid", "fill", "stroke", "paint", "segment_distance", "arc_distance", "curve_through",
    "circle_sdf", "polygon_sdf", "regular_polygon", "star_polygon", "wave_distance", "spiral_distance",
    "box_sdf",
]


def _col(t: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 1, 1] for broadcasting against [1, H, W] grids."""
    return t.reshape(-1, 1, 1)


def pixel_grid(size: int, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``(px, py)``, each ``[1, size, size]``: ``px[0, i, j] = j + 0.5`` (column),
    ``py[0, i, j] = i + 0.5`` (row)."""
    r = torch.arange(size, device=device, dtype=dtype) + 0.5
    py, px = torch.meshgrid(r, r, indexing="ij")
    return px[None], py[None]


def fill(sdf: torch.Tensor) -> torch.Tensor:
    """Coverage of the region where the signed distance is negative, anti-aliased over one pixel."""
    return (0.5 - sdf).clamp(0.0, 1.0)


def stroke(distance: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Coverage of a stroke of ``width [B]`` pixels along the zero set of ``distance [B, H, W]``."""
    return (_col(width) / 2 + 0.5 - distance.abs()).clamp(0.0, 1.0)


def paint(images: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Composite ``colour [B, 3]`` with coverage ``alpha [B, H, W]`` over ``images [B, 3, H, W]`` (returns new)."""
    a = alpha[:, None]
    return images * (1 - a) + colour[:, :, None, None] * a


def _dir(angle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cos(angle), -torch.sin(angle)


def segment_distance(px: torch.Tensor, py: torch.Tensor, ax: torch.Tensor, ay: torch.Tensor,
                     bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
    """Distance ``[B, H, W]`` from each pixel to the segment ``(ax, ay)-(bx, by)`` (``[B]`` each)."""
    ax, ay, bx, by = map(_col, (ax, ay, bx, by))
    dx, dy = bx - ax, by - ay
    t = (((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy).clamp_min(1e-9)).clamp(0.0, 1.0)
    return torch.hypot(px - ax - t * dx, py - ay - t * dy)


def _wrap(a: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def arc_distance(px: torch.Tensor, py: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, r: torch.Tensor,
                 mid: torch.Tensor, half_span: torch.Tensor) -> torch.Tensor:
    """Distance to the arc of the circle (centre ``(cx, cy)``, radius ``r``) between angles
    ``mid - half_span`` and ``mid + half_span``, all ``[B]``."""
    cx, cy, r, mid, half_span = map(_col, (cx, cy, r, mid, half_span))
    vx, vy = px - cx, py - cy
    rho = torch.hypot(vx, vy)
    delta = _wrap(torch.atan2(-vy, vx) - mid)
    on = delta.abs() <= half_span
    ends = []
    for sign in (-1.0, 1.0):
        ex = cx + r * torch.cos(mid + sign * half_span)
        ey = cy - r * torch.sin(mid + sign * half_span)
        ends.append(torch.hypot(px - ex, py - ey))
    return torch.where(on, (rho - r).abs(), torch.minimum(*ends))


def curve_through(px: torch.Tensor, py: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                  orientation: torch.Tensor, radius: torch.Tensor, half_span: torch.Tensor) -> torch.Tensor:
    """Distance to an arc through ``(x, y)`` whose centre of curvature lies at ``radius`` in direction
    ``orientation``; the arc spans ``half_span`` radians of its circle on each side of ``(x, y)``."""
    ux, uy = _dir(orientation)
    cx, cy = x + radius * ux, y + radius * uy
    return arc_distance(px, py, cx, cy, radius, orientation + math.pi, half_span)


def circle_sdf(px: torch.Tensor, py: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
               r: torch.Tensor) -> torch.Tensor:
    """Signed distance to a circle (negative inside)."""
    return torch.hypot(px - _col(cx), py - _col(cy)) - _col(r)


def box_sdf(px: torch.Tensor, py: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, half: torch.Tensor,
            angle: torch.Tensor) -> torch.Tensor:
    """Signed distance to a square of half-side ``half`` rotated by ``angle``."""
    c, s = torch.cos(_col(angle)), torch.sin(_col(angle))
    dx, dy = px - _col(cx), py - _col(cy)
    u, v = (c * dx - s * dy).abs() - _col(half), (s * dx + c * dy).abs() - _col(half)
    outside = torch.hypot(u.clamp_min(0), v.clamp_min(0))
    return outside + torch.maximum(u, v).clamp_max(0)


def polygon_sdf(px: torch.Tensor, py: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor) -> torch.Tensor:
    """Signed distance to closed polygons with vertices ``vx, vy [B, K]`` (repeat the last vertex to pad
    polygons with fewer vertices); inside by the even-odd rule."""
    k = vx.shape[1]
    dist = None
    inside = torch.zeros(px.shape[-2:], dtype=torch.bool, device=px.device).expand(vx.shape[0], -1, -1)
    for i in range(k):
        j = (i + 1) % k
        d = segment_distance(px, py, vx[:, i], vy[:, i], vx[:, j], vy[:, j])
        dist = d if dist is None else torch.minimum(dist, d)
        yi, yj, xi, xj = _col(vy[:, i]), _col(vy[:, j]), _col(vx[:, i]), _col(vx[:, j])
        crosses = (yi > py) != (yj > py)
        x_at = (xj - xi) * (py - yi) / torch.where(yj == yi, torch.ones_like(yj), yj - yi) + xi
        inside = inside ^ (crosses & (px < x_at))
    return torch.where(inside, -dist, dist)


def regular_polygon(cx: torch.Tensor, cy: torch.Tensor, r: torch.Tensor, n: torch.Tensor, angle: torch.Tensor,
                    k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices ``[B, k]`` of regular ``n``-gons (``n [B]`` integer-valued, ``n <= k``), padded by repetition."""
    i = torch.arange(k, device=cx.device, dtype=cx.dtype)[None].expand(len(cx), -1)
    i = torch.minimum(i, n[:, None] - 1)
    a = angle[:, None] + 2 * math.pi * i / n[:, None]
    return cx[:, None] + r[:, None] * torch.cos(a), cy[:, None] - r[:, None] * torch.sin(a)


def star_polygon(cx: torch.Tensor, cy: torch.Tensor, r: torch.Tensor, inner: torch.Tensor, points: torch.Tensor,
                 angle: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices ``[B, k]`` of stars with ``points [B]`` tips (``2 * points <= k``), inner radius ``inner * r``."""
    i = torch.arange(k, device=cx.device, dtype=cx.dtype)[None].expand(len(cx), -1)
    i = torch.minimum(i, 2 * points[:, None] - 1)
    rad = torch.where(i % 2 == 0, r[:, None], (inner * r)[:, None])
    a = angle[:, None] + math.pi * i / points[:, None]
    return cx[:, None] + rad * torch.cos(a), cy[:, None] - rad * torch.sin(a)


def wave_distance(px: torch.Tensor, py: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, angle: torch.Tensor,
                  length: torch.Tensor, amplitude: torch.Tensor, wavelength: torch.Tensor,
                  phase: torch.Tensor) -> torch.Tensor:
    """Approximate distance to a sine wave of ``length`` pixels along direction ``angle``."""
    c, s = torch.cos(_col(angle)), torch.sin(_col(angle))
    dx, dy = px - _col(cx), -(py - _col(cy))
    u, v = c * dx + s * dy, -s * dx + c * dy
    k = 2 * math.pi / _col(wavelength)
    arg = k * u + _col(phase)
    perp = (v - _col(amplitude) * torch.sin(arg)).abs() / torch.sqrt(1 + (_col(amplitude) * k * torch.cos(arg)) ** 2)
    over = (u.abs() - _col(length) / 2).clamp_min(0)
    return torch.hypot(perp, over)


def spiral_distance(px: torch.Tensor, py: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, pitch: torch.Tensor,
                    turns: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Approximate distance to an Archimedean spiral ``rho = pitch * t / (2 pi)``, ``t`` in ``[pi/2, 2 pi turns]``,
    rotated by ``angle``."""
    dx, dy = px - _col(cx), py - _col(cy)
    rho = torch.hypot(dx, dy)
    phi = torch.remainder(torch.atan2(-dy, dx) - _col(angle), 2 * math.pi)
    b = _col(pitch) / (2 * math.pi)
    t0, t1 = math.pi / 2, 2 * math.pi * _col(turns)
    n = torch.round((rho / b - phi) / (2 * math.pi))
    best = None
    for shift in (-1.0, 0.0, 1.0):
        t = (phi + 2 * math.pi * (n + shift)).clamp(t0, None)
        t = torch.minimum(t, t1.expand_as(t))
        qx = b * t * torch.cos(t + _col(angle))
        qy = -b * t * torch.sin(t + _col(angle))
        d = torch.hypot(dx - qx, dy - qy)
        best = d if best is None else torch.minimum(best, d)
    return best
