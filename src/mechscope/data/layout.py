"""The "layout" world: procedural scenes with an up and a down — sky above, ground below a horizon.

Built for the Weight Banding experiments (Petrov et al., Distill 2021): photographs have large-scale vertical
structure (sky at the top, ground at the bottom) that global average pooling throws away; this world has it by
construction and the shapes world (``data/shapes.py``) does not.  Every image is a pure function of
``(seed, index)`` (one ``numpy`` generator per item seeded by both); rendering is vectorised in torch.

**Scene** (``size`` px square, default 32): a horizon at a random height (``horizon`` range, as a fraction of
the height from the top); above it a sky — bluish, light, brightening towards the horizon, with soft clouds;
below it a ground — greenish or brownish, darker, with a texture that coarsens towards the bottom.  One object
(disc, square or triangle, 2.5–5 px in radius on a 32-px canvas, any colour) in the sky or on the ground, at
least 2 px from the horizon, anywhere in x; 0–4 specks of clutter anywhere; pixel noise.

**Targets** (``labels``: ``[B]`` long tensors, all defined for every image, ``TASKS`` order):

* ``place`` (2): 0 the object is above the horizon (in the sky), 1 below it (on the ground) — a target that
  depends on vertical position relative to the horizon.
* ``horizon`` (4): the horizon's height in 4 equal bins of the ``horizon`` range (0 highest).
* ``kind`` (3): the object's shape (``OBJECTS``).

Also in ``labels`` (float ``[B]``, not tasks): ``horizon_y`` and ``object_y``, the horizon's height at the image
centre and the object's centre, in px from the top of the unrotated image.

``rotate=True`` turns every image by 90° (``torch.rot90``, counter-clockwise) and keeps the labels: the world of
the rotated-data ablation, whose "up" is on the left.

Example::

    >>> from mechscope.data.layout import LayoutDataset
    >>> ds = LayoutDataset(n=8, seed=0)
    >>> images, labels = ds.sample([0, 5])
    >>> images.shape, sorted(labels)
    (torch.Size([2, 3, 32, 32]), ['horizon', 'horizon_y', 'kind', 'object_y', 'place'])
    >>> bool((ds.sample([5])[0] == images[1:]).all())      # every item is a function of (seed, index)
    True
    >>> turned = LayoutDataset(n=8, seed=0, rotate=True).sample([0, 5])[0]
    >>> bool((turned == images.rot90(1, (2, 3))).all())
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mechscope.errors import MechscopeError

OBJECTS = ("disc", "square", "triangle")
TASKS = {"place": 2, "horizon": 4, "kind": len(OBJECTS)}


@dataclass(frozen=True)
class LayoutConfig:
    """Parameters of the world (pixel lengths on a 32-px canvas, scaled with ``size``)."""

    size: int = 32
    horizon: tuple[float, float] = (0.3, 0.7)      # height of the horizon, fraction of the image from the top
    object_radius: tuple[float, float] = (2.5, 5.0)
    clutter: int = 4                                # at most this many specks
    pixel_noise: float = 0.03

    def as_dict(self) -> dict:
        return asdict(self)


def _draws(indices: Sequence[int], seed: int, n: int) -> torch.Tensor:
    """``[B, n]`` uniforms in [0, 1), row ``i`` a function of ``(seed, indices[i])`` only."""
    rows = [np.random.default_rng([seed, int(i)]).random(n) for i in indices]
    return torch.tensor(np.stack(rows), dtype=torch.float32)


_N = 64          # uniforms per item
_GRID = 4        # low-frequency noise grid of the clouds and the ground texture


def generate(indices: Sequence[int], seed: int = 0, config: LayoutConfig = LayoutConfig(),
             rotate: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Images ``[B, 3, size, size]`` in [0, 1] and labels (``TASKS``) for the items ``indices`` of world ``seed``."""
    if config.size < 16:
        raise MechscopeError(f"size must be at least 16 px, got {config.size}")
    lo_h, hi_h = config.horizon
    if not 0.1 <= lo_h < hi_h <= 0.9:
        raise MechscopeError(f"horizon must satisfy 0.1 <= lo < hi <= 0.9, got {config.horizon}")
    b, s = len(indices), config.size
    scale = s / 32.0
    u = _draws(indices, seed, _N)
    g = torch.Generator().manual_seed(0)
    fine = torch.stack([torch.randn(3 * _GRID * _GRID + s * s + 3 * s * s,
                                    generator=g.manual_seed((seed * 1_000_003 + int(i)) % (2**63 - 1)))
                         for i in indices])
    cloud_grid = fine[:, :_GRID * _GRID].reshape(b, 1, _GRID, _GRID)
    ground_grid = fine[:, _GRID * _GRID:2 * _GRID * _GRID].reshape(b, 1, _GRID, _GRID)
    texture = fine[:, 3 * _GRID * _GRID:3 * _GRID * _GRID + s * s].reshape(b, 1, s, s)
    noise = fine[:, 3 * _GRID * _GRID + s * s:].reshape(b, 3, s, s)

    ys = (torch.arange(s, dtype=torch.float32) + 0.5)[None, :, None].expand(b, s, s)   # row centre, px
    xs = (torch.arange(s, dtype=torch.float32) + 0.5)[None, None, :].expand(b, s, s)
    frac = u[:, 0]
    horizon_frac = lo_h + (hi_h - lo_h) * frac                                        # [B]
    horizon_bin = (frac * 4).long().clamp(max=3)
    hy = (horizon_frac * s)[:, None, None]                                            # [B, 1, 1]
    # a slightly tilted, gently wavy horizon line
    tilt = (u[:, 1] - 0.5)[:, None, None] * 0.15
    wave = (u[:, 2] * 1.2 * scale)[:, None, None] * torch.sin(xs / s * 6.28 * (1 + 2 * u[:, 3])[:, None, None]
                                                               + 6.28 * u[:, 4][:, None, None])
    line = hy + tilt * (xs - s / 2) + wave
    ground = torch.sigmoid((ys - line) * 2.0)                                         # [B, S, S] 1 on the ground

    # sky: bluish, light, brightening towards the horizon, soft clouds
    depth = (ys / hy).clamp(max=1.0)
    sky_top = torch.stack([0.35 + 0.2 * u[:, 5], 0.5 + 0.2 * u[:, 6], 0.75 + 0.2 * u[:, 7]], 1)
    sky = sky_top[:, :, None, None] + (0.15 + 0.1 * u[:, 8])[:, None, None, None] * depth[:, None]
    clouds = F.interpolate(cloud_grid, size=(s, s), mode="bicubic", align_corners=False).clamp(min=0)
    sky = sky + (0.25 * u[:, 9])[:, None, None, None] * clouds
    # ground: greenish or brownish, darker, texture coarser towards the bottom
    green = torch.stack([0.25 + 0.15 * u[:, 10], 0.4 + 0.15 * u[:, 11], 0.15 + 0.1 * u[:, 12]], 1)
    brown = torch.stack([0.45 + 0.15 * u[:, 10], 0.33 + 0.1 * u[:, 11], 0.2 + 0.1 * u[:, 12]], 1)
    base = torch.where((u[:, 13] < 0.5)[:, None], green, brown)
    patches = F.interpolate(ground_grid, size=(s, s), mode="bilinear", align_corners=False)
    below = ((ys - line) / (s - line).clamp(min=1.0)).clamp(0, 1)[:, None]
    ground_img = base[:, :, None, None] * (0.85 + 0.1 * patches) + 0.08 * texture * (0.3 + below)
    image = sky * (1 - ground[:, None]) + ground_img * ground[:, None]

    # the object: in the sky or on the ground, >= 2 px from the horizon line
    radius = (config.object_radius[0] + (config.object_radius[1] - config.object_radius[0]) * u[:, 14]) * scale
    place = (u[:, 15] < 0.5).long()                                                   # 1: on the ground
    ox = radius + (s - 2 * radius) * u[:, 16]
    gap = 2.0 * scale + radius
    h0 = horizon_frac * s
    sky_lo, sky_hi = radius, (h0 - gap).clamp(min=radius)
    gnd_lo, gnd_hi = (h0 + gap).clamp(max=s - radius), s - radius
    oy = torch.where(place.bool(), gnd_lo + (gnd_hi - gnd_lo) * u[:, 17], sky_lo + (sky_hi - sky_lo) * u[:, 17])
    kind = (u[:, 18] * len(OBJECTS)).long().clamp(max=len(OBJECTS) - 1)
    dx, dy = xs - ox[:, None, None], ys - oy[:, None, None]
    r = radius[:, None, None]
    disc = r - (dx.square() + dy.square()).sqrt()
    square = r * 0.85 - torch.maximum(dx.abs(), dy.abs())
    tri = torch.minimum(dy + r * 0.6,
                        torch.minimum(-dy * 0.5 - dx * 0.87 + r * 0.6, -dy * 0.5 + dx * 0.87 + r * 0.6))
    inside = torch.stack([disc, square, tri], 1).gather(1, kind[:, None, None, None].expand(b, 1, s, s))[:, 0]
    alpha = inside.clamp(-0.5, 0.5) + 0.5
    colour = torch.stack([u[:, 19], u[:, 20], u[:, 21]], 1)
    image = image * (1 - alpha[:, None]) + colour[:, :, None, None] * alpha[:, None]

    # clutter: small specks anywhere
    n_specks = (u[:, 22] * (config.clutter + 1)).long()
    for k in range(config.clutter):
        cx, cy = u[:, 23 + 4 * k] * s, u[:, 24 + 4 * k] * s
        spot = (0.8 * scale - ((xs - cx[:, None, None]).square() + (ys - cy[:, None, None]).square()).sqrt())
        a = (spot.clamp(-0.5, 0.5) + 0.5) * (k < n_specks).float()[:, None, None]
        lum = u[:, 25 + 4 * k][:, None, None, None]
        image = image * (1 - a[:, None]) + lum * a[:, None]

    image = (image + config.pixel_noise * noise).clamp(0, 1)
    if rotate:
        image = image.rot90(1, (2, 3))
    labels: dict[str, torch.Tensor] = {"place": place, "horizon": horizon_bin, "kind": kind,
                                       "horizon_y": h0, "object_y": oy}
    return image.contiguous(), labels


class LayoutDataset:
    """``n`` items of the layout world ``seed`` (``rotate``: every image turned 90°, labels kept)."""

    def __init__(self, n: int, seed: int = 0, config: LayoutConfig | None = None, rotate: bool = False) -> None:
        if n < 1:
            raise MechscopeError(f"n must be at least 1, got {n}")
        self.n, self.seed, self.config, self.rotate = n, seed, config or LayoutConfig(), rotate

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"LayoutDataset(n={self.n}, seed={self.seed}, size={self.config.size}, rotate={self.rotate})"

    def sample(self, indices: Sequence[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Images ``[len(indices), 3, size, size]`` and labels of the given items."""
        bad = [i for i in indices if not 0 <= int(i) < self.n]
        if bad:
            raise MechscopeError(f"indices {bad[:3]} outside the dataset of {self.n} items")
        return generate(indices, self.seed, self.config, self.rotate)

    def labelled_batches(self, batch_size: int, start: int = 0
                         ) -> Iterator[tuple[list[int], torch.Tensor, dict[str, torch.Tensor]]]:
        """``(indices, images, labels)`` over the items from ``start`` in order."""
        for lo in range(start, self.n, batch_size):
            idx = list(range(lo, min(lo + batch_size, self.n)))
            images, labels = self.sample(idx)
            yield idx, images, labels
