"""A quilt: dataset examples of one unit laid out by activation level, one row per level, highest at the top.

The Circuits papers show a unit's whole response range, not only its top examples: random dataset examples,
binned by how strongly the unit responds to them.  ``quilt`` is the pure layout step: it takes images (or
receptive-field crops) with the unit's activation on each, splits the value range into ``bins`` equal levels
and fills row *r* with up to ``per_bin`` images whose value lies in level *r* (a seeded random choice when there
are more), leaving the rest of the row grey.  ``vision/scan.py`` keeps the random sample it is drawn from.

Example::

    >>> import torch
    >>> from mechscope.vision.evidence.quilt import quilt, quilt_levels
    >>> images = torch.rand(10, 3, 4, 4)
    >>> values = torch.arange(10.0)            # 0 .. 9
    >>> quilt_levels(values, bins=3)[1].tolist()
    [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    >>> quilt(images, values, bins=3, per_bin=2, pad=1).shape   # 3 rows x 2 columns of 4 px, 1 px apart
    torch.Size([3, 14, 9])
"""

from __future__ import annotations

from typing import Any

import torch

from mechscope.errors import MechscopeError

EMPTY = 0.5
"""Grey of an empty slot (a level with fewer than ``per_bin`` images)."""


def quilt_levels(values: Any, bins: int, value_range: tuple[float, float] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(edges [bins + 1], level of each value [n])``: equal levels over ``value_range`` (default: min..max).

    Values outside the range go to the first / last level; ``nan`` values get level ``-1`` (left out).
    """
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if not isinstance(bins, int) or bins < 1:
        raise MechscopeError(f"bins must be a positive int, got {bins!r}")
    finite = v[torch.isfinite(v)]
    if value_range is None:
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    else:
        lo, hi = map(float, value_range)
    if hi <= lo:
        hi = lo + 1.0
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    level = ((v - lo) / (hi - lo) * bins).floor().clamp(0, bins - 1)
    return edges, torch.where(torch.isfinite(v), level, -1).long()


def quilt(
    images: torch.Tensor,
    values: Any,
    *,
    bins: int = 6,
    per_bin: int = 8,
    value_range: tuple[float, float] | None = None,
    seed: int = 0,
    pad: int = 2,
) -> torch.Tensor:
    """Lay out ``images [n, C, h, w]`` by ``values [n]`` -> one image ``[C, bins*(h+pad)-pad, per_bin*(w+pad)-pad]``.

    Row 0 holds the highest level, row ``bins - 1`` the lowest (see ``quilt_levels``); within a row images are
    in dataset order (the order given), chosen at random (``seed``) when a level has more than ``per_bin``.
    Gaps between images are white, empty slots ``EMPTY`` grey.
    """
    if images.dim() != 4:
        raise MechscopeError(f"quilt takes images [n, C, h, w], got shape {tuple(images.shape)}")
    v = torch.as_tensor(values).flatten()
    if len(v) != len(images):
        raise MechscopeError(f"quilt got {len(images)} images but {len(v)} values")
    if not isinstance(per_bin, int) or per_bin < 1:
        raise MechscopeError(f"per_bin must be a positive int, got {per_bin!r}")
    _, level = quilt_levels(v, bins, value_range)
    _, c, h, w = images.shape
    out = torch.ones(c, bins * (h + pad) - pad, per_bin * (w + pad) - pad, dtype=images.dtype)
    g = torch.Generator().manual_seed(seed)
    for row in range(bins):
        members = torch.nonzero(level == bins - 1 - row).flatten()
        if len(members) > per_bin:
            members = members[torch.randperm(len(members), generator=g)[:per_bin]].sort().values
        top = row * (h + pad)
        for col in range(per_bin):
            left = col * (w + pad)
            tile = images[int(members[col])].detach().cpu() if col < len(members) else EMPTY
            out[:, top:top + h, left:left + w] = tile
    return out


__all__ = ["quilt", "quilt_levels", "EMPTY"]
