"""The "shapes" world: a procedural image world whose tasks need curve, line, colour and frequency features.

Every image is a pure function of ``(seed, index)`` (its own ``numpy`` generator seeded by both), so a dataset
is infinite, needs no files, and any item can be regenerated alone; rendering is vectorised in torch over the
batch (``draw.py``: anti-aliased distance fields).  Sizes are defined on a 64-pixel canvas and scale with
``size``.

**Scenes** (kind drawn per image with ``WorldConfig.kind_probs``):

* ``shape`` — one main shape of ten classes (``SHAPE_CLASSES``: disc, ring, arc, spiral, wave, line, angle,
  polygon, star, cross; polygons and stars filled or outlined), 10–22 px in radius, anywhere in the central
  area, at any angle, plus up to three small distractors (dots, short strokes, small squares).
* ``curve`` — one stroke passing within 2 px of the image centre: straight, *gentle* (radius 16–36 px) or
  *sharp* (radius 5–11 px), 24–48 px long, at a uniformly random orientation, the crossing point offset along
  the arc by up to 30 % of its half-span; distractors are kept at least 20 px from the centre.
* ``boundary`` — a boundary between a high-frequency texture (fine noise or 14–22-cycle stripes) and a
  low-frequency background of the same mean, through a point within 4 px of the centre, at any angle.

**Backgrounds**: dark (luminance 0.08–0.35) or light (0.6–0.92), faintly tinted (saturation ≤ 0.25), of five
types — flat, linear gradient, low-frequency noise (4×4 or 8×8 upsampled), stripes (3–10 cycles per image)
and texture (fine noise + 16×16 noise) — plus pixel noise (σ ≤ 0.03).  Strokes are 1.5–3.5 px wide; every
element's luminance differs from the background's by 0.35–0.6; half the main elements are coloured
(saturation 0.6–1), half grey.

**Targets** (``labels`` dict of ``[B]`` long tensors; ``IGNORE = -100`` where a target does not apply):

* ``shape`` (10 classes): the main shape's class, in ``shape`` scenes.
* ``curve`` (40 classes): for ``curve`` scenes, ``16 * c + o`` with curvature ``c`` (0 gentle, 1 sharp) and
  ``o`` the orientation in 16 bins of 22.5° (the direction from the centre to the centre of curvature,
  counter-clockwise from +x, y up), or ``32 + o8`` for straight strokes (8 bins of the normal mod 180°).
* ``boundary`` (9 classes): ``1 + o8``, the direction from the low- to the high-frequency side in 8 bins of
  45°, for ``boundary`` scenes; 0 ("none") otherwise.
* ``colour`` (2 classes): 1 if the main shape or curve is coloured, 0 if grey; ignored in boundary scenes.

Example::

    >>> from mechscope.data.shapes import ShapesDataset
    >>> ds = ShapesDataset(n=8, size=64, seed=0)
    >>> images, labels = ds.sample([0, 5])
    >>> images.shape, sorted(labels)
    (torch.Size([2, 3, 64, 64]), ['boundary', 'colour', 'curve', 'kind', 'shape'])
    >>> bool((ds.sample([5])[0] == images[1:]).all())      # every item is a function of (seed, index)
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mechscope.data import draw
from mechscope.errors import MechscopeError

SHAPE_CLASSES = ("disc", "ring", "arc", "spiral", "wave", "line", "angle", "polygon", "star", "cross")
KINDS = ("shape", "curve", "boundary")
CURVE_ORIENTATIONS = 16
CURVE_CLASSES = 2 * CURVE_ORIENTATIONS + CURVE_ORIENTATIONS // 2
BOUNDARY_CLASSES = 9
IGNORE = -100
TASKS = {"shape": len(SHAPE_CLASSES), "curve": CURVE_CLASSES, "boundary": BOUNDARY_CLASSES, "colour": 2}

_N_UNIFORM = 128
BACKGROUNDS = ("flat", "gradient", "noise", "stripes", "texture")
_TAU = 2 * math.pi


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of the world (pixel lengths on a 64-px canvas; scaled with ``size``)."""

    size: int = 64
    kind_probs: tuple[float, float, float] = (0.4, 0.4, 0.2)
    straight_prob: float = 0.2           # of curve scenes; the rest split evenly gentle / sharp
    gentle_radius: tuple[float, float] = (16.0, 36.0)
    sharp_radius: tuple[float, float] = (5.0, 11.0)
    curve_length: tuple[float, float] = (24.0, 48.0)
    stroke_width: tuple[float, float] = (1.5, 3.5)
    shape_radius: tuple[float, float] = (10.0, 22.0)
    distractor_prob: float = 0.6         # per slot, three slots
    colour_prob: float = 0.5
    contrast: tuple[float, float] = (0.35, 0.6)
    pixel_noise: float = 0.03
    backgrounds: tuple[str, ...] = ("flat", "gradient", "noise", "stripes", "texture")

    def as_dict(self) -> dict:
        return asdict(self)


class _Draws:
    """Hands out the columns of a ``[B, n]`` uniform matrix in a fixed order, mapped to ranges."""

    def __init__(self, u: torch.Tensor) -> None:
        self.u, self.i = u, 0

    def __call__(self, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        col = self.u[:, self.i]
        self.i += 1
        return lo + (hi - lo) * col

    def choice(self, n: int) -> torch.Tensor:
        return (self() * n).long().clamp_max(n - 1)


def _randomness(indices: Sequence[int], seed: int, size: int) -> dict[str, torch.Tensor]:
    u = np.empty((len(indices), _N_UNIFORM))
    shapes = {"n4": (4, 4), "n8": (8, 8), "n16": (16, 16), "fine": (size, size), "pix": (size, size)}
    fields = {k: np.empty((len(indices), *s), dtype=np.float32) for k, s in shapes.items()}
    for row, index in enumerate(indices):
        rng = np.random.default_rng([int(seed), int(index)])
        u[row] = rng.random(_N_UNIFORM)
        for k, s in shapes.items():
            fields[k][row] = rng.standard_normal(s, dtype=np.float32)
    out = {k: torch.from_numpy(v) for k, v in fields.items()}
    out["u"] = torch.from_numpy(u).float()
    return out


def _up(field: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(field[:, None], size=(size, size), mode="bicubic", align_corners=False)[:, 0]


def _hue(h: torch.Tensor) -> torch.Tensor:
    """A zero-mean RGB direction ``[B, 3]`` of hue ``h``."""
    return torch.stack([torch.cos(h), torch.cos(h - _TAU / 3), torch.cos(h + _TAU / 3)], 1)


def _colour(d: _Draws, bg_lum: torch.Tensor, cfg: WorldConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """An element colour ``[B, 3]`` contrasting with the background, and whether it is coloured ``[B]``."""
    contrast = d(*cfg.contrast)
    lum = torch.where(bg_lum > 0.5, bg_lum - contrast, bg_lum + contrast).clamp(0.05, 0.95)
    coloured = d() < cfg.colour_prob
    sat = d(0.6, 1.0) * coloured
    rgb = lum[:, None] + 0.4 * sat[:, None] * _hue(d(0, _TAU))
    return rgb.clamp(0, 1), coloured


def _background(d: _Draws, r: dict[str, torch.Tensor], px: torch.Tensor, py: torch.Tensor, size: int,
                boundary: torch.Tensor, allowed: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Backgrounds ``[B, 3, S, S]`` and their mean luminance ``[B]``; boundary scenes get flat or low-frequency
    backgrounds only (their texture comes from the boundary)."""
    b = len(boundary)
    lum = torch.where(d() < 0.5, d(0.08, 0.35), d(0.6, 0.92))
    base = lum[:, None] + 0.4 * d(0, 0.25)[:, None] * _hue(d(0, _TAU))
    unknown = [a for a in allowed if a not in BACKGROUNDS]
    if unknown or not allowed:
        raise MechscopeError(f"unknown backgrounds {unknown or allowed!r}; choose from {BACKGROUNDS}")
    kind = torch.tensor([BACKGROUNDS.index(a) for a in allowed])[d.choice(len(allowed))]
    kind = torch.where(boundary, torch.where(kind % 2 == 0, 0, 2), kind)
    ang, amp, freq, phase = d(0, _TAU), d(), d(3, 10), d(0, _TAU)
    proj = (px * torch.cos(ang).view(-1, 1, 1) - py * torch.sin(ang).view(-1, 1, 1)) / size
    low = torch.where((d() < 0.5).view(-1, 1, 1), _up(r["n4"], size), _up(r["n8"], size))
    patterns = [
        torch.zeros(b, size, size),
        (0.1 + 0.25 * amp).view(-1, 1, 1) * (proj - proj.mean((1, 2), keepdim=True)),
        (0.08 + 0.12 * amp).view(-1, 1, 1) * low,
        (0.05 + 0.1 * amp).view(-1, 1, 1) * torch.sin(_TAU * freq.view(-1, 1, 1) * proj + phase.view(-1, 1, 1)),
        (0.04 + 0.08 * amp).view(-1, 1, 1) * r["fine"] + 0.08 * _up(r["n16"], size),
    ]
    pattern = torch.stack(patterns, 0)[kind, torch.arange(b)]
    return base[:, :, None, None] + pattern[:, None], lum


def _shape_alpha(d: _Draws, px: torch.Tensor, py: torch.Tensor, cls: torch.Tensor, s: float,
                 cfg: WorldConfig, outline: bool = False) -> torch.Tensor:
    """Coverage ``[B, S, S]`` of each item's main shape of class ``cls``.  ``outline=True`` draws a sketch of
    it instead (the multimodal world's ``sketch`` style): polygons and stars stroked, never filled; a disc as its
    contour with hatching inside; a ring as its two contours.  The draws taken from ``d`` are the same either way."""
    cx, cy = d(20, 44) * s, d(20, 44) * s
    rad, ang, width = d(*cfg.shape_radius) * s, d(0, _TAU), d(*cfg.stroke_width) * s
    filled, aux1, aux2, aux3 = d() < 0.5, d(), d(), d()
    if outline:
        filled = torch.zeros_like(filled)
    alpha = torch.zeros(len(cls), px.shape[-2], px.shape[-1])
    for k, name in enumerate(SHAPE_CLASSES):
        idx = (cls == k).nonzero()[:, 0]
        if len(idx) == 0:
            continue
        x, y, r, a, w, f = cx[idx], cy[idx], rad[idx], ang[idx], width[idx], filled[idx]
        u1, u2, u3 = aux1[idx], aux2[idx], aux3[idx]
        if name == "disc" and outline:
            out = _hatched_disc(px, py, x, y, r, a, w, s)
        elif name == "disc":
            out = draw.fill(draw.circle_sdf(px, py, x, y, r))
        elif name == "ring" and outline:
            gap = (1.5 + u1) * s
            out = torch.maximum(draw.stroke(draw.circle_sdf(px, py, x, y, r + gap), w),
                                draw.stroke(draw.circle_sdf(px, py, x, y, r - gap), w))
        elif name == "ring":
            out = draw.stroke(draw.circle_sdf(px, py, x, y, r), w)
        elif name == "arc":
            half = math.radians(40) + u1 * math.radians(100)
            out = draw.stroke(draw.arc_distance(px, py, x, y, r, a, half), w)
        elif name == "spiral":
            turns = 1.5 + u1
            out = draw.stroke(draw.spiral_distance(px, py, x, y, r / turns, turns, a), w)
        elif name == "wave":
            out = draw.stroke(draw.wave_distance(px, py, x, y, a, 2 * r + 8 * s, (3 + 3 * u1) * s,
                                                 (10 + 10 * u2) * s, u3 * _TAU), w)
        elif name == "line":
            dx, dy = r * torch.cos(a), -r * torch.sin(a)
            out = draw.stroke(draw.segment_distance(px, py, x - dx, y - dy, x + dx, y + dy), w)
        elif name == "angle":
            opening = math.radians(40) + u1 * math.radians(100)
            arms = []
            for arm in (a, a + opening):
                arms.append(draw.segment_distance(px, py, x, y, x + 1.2 * r * torch.cos(arm),
                                                  y - 1.2 * r * torch.sin(arm)))
            out = draw.stroke(torch.minimum(*arms), w)
        elif name in ("polygon", "star"):
            if name == "polygon":
                vx, vy = draw.regular_polygon(x, y, r, (3 + u1 * 4).floor().clamp_max(6), a, 6)
            else:
                vx, vy = draw.star_polygon(x, y, r, 0.4 + 0.15 * u2, (5 + u1 * 3).floor().clamp_max(7), a, 14)
            sdf = draw.polygon_sdf(px, py, vx, vy)
            out = torch.where(f.view(-1, 1, 1), draw.fill(sdf), draw.stroke(sdf, w))
        else:  # cross
            segs = []
            for arm in (a, a + math.pi / 2):
                dx, dy = r * torch.cos(arm), -r * torch.sin(arm)
                segs.append(draw.segment_distance(px, py, x - dx, y - dy, x + dx, y + dy))
            out = draw.stroke(torch.minimum(*segs), w * 1.3)
        alpha[idx] = out
    return alpha


def _hatched_disc(px: torch.Tensor, py: torch.Tensor, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor,
                  a: torch.Tensor, w: torch.Tensor, s: float) -> torch.Tensor:
    """A sketched disc ``[B, S, S]``: its contour and parallel hatching (4 px apart, at angle ``a``) inside."""
    contour = draw.stroke(draw.circle_sdf(px, py, x, y, r), w)
    proj = ((px - x.view(-1, 1, 1)) * torch.cos(a).view(-1, 1, 1) - (py - y.view(-1, 1, 1)) * torch.sin(a).view(
        -1, 1, 1)) / (4 * s)
    hatch = draw.stroke((proj - torch.round(proj)).abs() * 4 * s, w) * draw.fill(draw.circle_sdf(px, py, x, y, r - w))
    return torch.maximum(contour, hatch)


def _curve_alpha(d: _Draws, px: torch.Tensor, py: torch.Tensor, size: int, s: float,
                 cfg: WorldConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Coverage ``[B, S, S]`` of a stroke through the centre, and its ``curve`` label ``[B]``."""
    x, y = size / 2 + d(-2, 2) * s, size / 2 + d(-2, 2) * s
    theta, which, width = d(0, _TAU), d(), d(*cfg.stroke_width) * s
    straight = which < cfg.straight_prob
    sharp = which >= cfg.straight_prob + (1 - cfg.straight_prob) / 2
    radius = torch.where(sharp, d(*cfg.sharp_radius), d(*cfg.gentle_radius)) * s
    length = d(*cfg.curve_length) * s
    half = torch.minimum(length / (2 * radius), torch.full_like(radius, math.radians(120)))
    shift = d(-0.3, 0.3) * half
    cx, cy = x + radius * torch.cos(theta), y - radius * torch.sin(theta)
    arc = draw.arc_distance(px, py, cx, cy, radius, theta + math.pi + shift, half)
    tx, ty = -torch.sin(theta) * length / 2, -torch.cos(theta) * length / 2   # tangent (cos(t+90), -sin(t+90))
    line = draw.segment_distance(px, py, x - tx, y - ty, x + tx, y + ty)
    alpha = draw.stroke(torch.where(straight.view(-1, 1, 1), line, arc), width)
    o16 = torch.round(theta / (_TAU / CURVE_ORIENTATIONS)).long() % CURVE_ORIENTATIONS
    o8 = torch.round(torch.remainder(theta, math.pi) / (math.pi / 8)).long() % 8
    label = torch.where(straight, 2 * CURVE_ORIENTATIONS + o8, sharp.long() * CURVE_ORIENTATIONS + o16)
    return alpha, label


def _boundary(d: _Draws, r: dict[str, torch.Tensor], px: torch.Tensor, py: torch.Tensor, size: int,
              s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A high-frequency pattern ``[B, S, S]`` covering one half-plane, and its ``boundary`` label ``[B]``."""
    phi, x0, y0 = d(0, _TAU), size / 2 + d(-4, 4) * s, size / 2 + d(-4, 4) * s
    amp, freq, ang, phase, stripes = d(0.15, 0.3), d(14, 22), d(0, _TAU), d(0, _TAU), d() < 0.5
    proj = ((px - x0.view(-1, 1, 1)) * torch.cos(ang).view(-1, 1, 1)
            - (py - y0.view(-1, 1, 1)) * torch.sin(ang).view(-1, 1, 1)) / size
    hf = torch.where(stripes.view(-1, 1, 1), torch.sin(_TAU * freq.view(-1, 1, 1) * proj + phase.view(-1, 1, 1)),
                     r["fine"])
    side = (px - x0.view(-1, 1, 1)) * torch.cos(phi).view(-1, 1, 1) - (py - y0.view(-1, 1, 1)) * torch.sin(
        phi).view(-1, 1, 1)
    mask = draw.fill(-side)
    label = 1 + torch.round(phi / (_TAU / 8)).long() % 8
    return amp.view(-1, 1, 1) * hf * mask, label


def _distractors(d: _Draws, images: torch.Tensor, px: torch.Tensor, py: torch.Tensor, bg_lum: torch.Tensor,
                 keep_centre: torch.Tensor, size: int, s: float, cfg: WorldConfig) -> torch.Tensor:
    for _ in range(3):
        present, kind = d() < cfg.distractor_prob, d.choice(3)
        fx, fy = d(4, 60) * s, d(4, 60) * s
        ra, rr = d(0, _TAU), d(20, 28) * s
        x = torch.where(keep_centre, size / 2 + rr * torch.cos(ra), fx)
        y = torch.where(keep_centre, size / 2 - rr * torch.sin(ra), fy)
        extent, ang, width = d(1.5, 4.0) * s, d(0, _TAU), d(1.5, 2.5) * s
        colour, _ = _colour(d, bg_lum, cfg)
        dot = draw.fill(draw.circle_sdf(px, py, x, y, extent))
        dx, dy = 1.8 * extent * torch.cos(ang), -1.8 * extent * torch.sin(ang)
        seg = draw.stroke(draw.segment_distance(px, py, x - dx, y - dy, x + dx, y + dy), width)
        box = draw.fill(draw.box_sdf(px, py, x, y, extent, ang))
        alpha = torch.stack([dot, seg, box], 0)[kind, torch.arange(len(kind))] * present.view(-1, 1, 1)
        images = draw.paint(images, alpha, colour)
    return images


def generate(indices: Sequence[int], seed: int = 0, config: WorldConfig = WorldConfig()
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Images ``[B, 3, S, S]`` in ``[0, 1]`` and labels (``kind``, ``shape``, ``curve``, ``boundary``,
    ``colour``; each ``[B]`` long) of the items ``indices`` of the world ``seed``."""
    size = config.size
    s = size / 64
    r = _randomness(indices, seed, size)
    d = _Draws(r["u"])
    b = len(indices)
    px, py = draw.pixel_grid(size)
    cum = torch.tensor(np.cumsum(config.kind_probs) / sum(config.kind_probs), dtype=torch.float32)
    kind = torch.searchsorted(cum, d().contiguous(), right=True).clamp_max(2)
    is_shape, is_curve, is_boundary = kind == 0, kind == 1, kind == 2
    images, bg_lum = _background(d, r, px, py, size, is_boundary, config.backgrounds)
    hf, boundary_label = _boundary(d, r, px, py, size, s)
    images = images + (hf * is_boundary.view(-1, 1, 1))[:, None]
    images = _distractors(d, images, px, py, bg_lum, is_curve, size, s, config)
    shape_cls = d.choice(len(SHAPE_CLASSES))
    colour, coloured = _colour(d, bg_lum, config)
    alpha = torch.zeros(b, size, size)
    alpha[is_shape] = _shape_alpha(_Sub(d, is_shape), px, py, shape_cls[is_shape], s, config)
    curve_alpha, curve_label = _curve_alpha(d, px, py, size, s, config)
    alpha = torch.where(is_curve.view(-1, 1, 1), curve_alpha, alpha)
    images = draw.paint(images, alpha, colour)
    images = images + (config.pixel_noise * d()).view(-1, 1, 1, 1) * r["pix"][:, None]
    labels = {
        "kind": kind,
        "shape": torch.where(is_shape, shape_cls, IGNORE),
        "curve": torch.where(is_curve, curve_label, IGNORE),
        "boundary": torch.where(is_boundary, boundary_label, 0),
        "colour": torch.where(is_boundary, IGNORE, coloured.long()),
    }
    return images.clamp(0, 1), labels


class _Sub:
    """A view of ``_Draws`` restricted to the rows ``mask`` (keeps the column order of the full batch)."""

    def __init__(self, d: _Draws, mask: torch.Tensor) -> None:
        self.d, self.mask = d, mask

    def __call__(self, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        return self.d(lo, hi)[self.mask]

    def choice(self, n: int) -> torch.Tensor:
        return self.d.choice(n)[self.mask]


class ShapesDataset:
    """``n`` items of the shapes world (seed ``seed``), generated on demand; same protocol as ``ImageFolder``.

    ``batches(batch_size, start=)`` yields ``(indices, images)``; ``labelled_batches`` yields
    ``(indices, images, labels)``; ``sample(indices)`` returns ``(images, labels)``.  ``skipped`` is always
    empty (nothing to decode).
    """

    def __init__(self, n: int, size: int = 64, seed: int = 0, config: WorldConfig | None = None) -> None:
        if not isinstance(n, int) or n < 1:
            raise MechscopeError(f"ShapesDataset needs n >= 1 items, got {n!r}")
        if not isinstance(size, int) or size < 16:
            raise MechscopeError(f"ShapesDataset size must be an int >= 16 pixels, got {size!r}")
        base = config or WorldConfig()
        self.config = WorldConfig(**{**base.as_dict(), "size": size})
        self.n, self.size, self.seed = n, size, seed
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"ShapesDataset(n={self.n}, size={self.size}, seed={self.seed})"

    def sample(self, indices: Sequence[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        bad = [i for i in indices if not 0 <= int(i) < self.n]
        if bad:
            raise MechscopeError(f"indices {bad[:5]} out of range for {self!r}")
        return generate(list(indices), self.seed, self.config)

    def labelled_batches(self, batch_size: int, start: int = 0
                         ) -> Iterator[tuple[list[int], torch.Tensor, dict[str, torch.Tensor]]]:
        for lo in range(start, self.n, batch_size):
            idx = list(range(lo, min(lo + batch_size, self.n)))
            images, labels = self.sample(idx)
            yield idx, images, labels

    def batches(self, batch_size: int, start: int = 0) -> Iterator[tuple[list[int], torch.Tensor]]:
        for idx, images, _ in self.labelled_batches(batch_size, start):
            yield idx, images
