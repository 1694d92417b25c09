"""Receptive-field crops of dataset items: the part of an image that one position of a layer sees.

``crops_at(dataset, indices, positions, model, layer, input_size=)`` cuts, for each ``(item, (x, y))``, the box
``receptive_field_map`` gives for that position of ``layer``; boxes cut by the image border are padded back to
the full field with ``GREY`` on the side that lies outside, so all crops have one shape and pixels sit where
they would.  The field map is computed once per model, layer and input size.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from mechscope.vision.evidence.crops import crops_at
    >>> net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1))
    >>> images = torch.rand(4, 3, 8, 8)
    >>> crops = crops_at(images, [2, 3], [(4, 4), (0, 0)], net, "0", input_size=8)
    >>> crops.shape, bool((crops[0] == images[2, :, 3:6, 3:6]).all()), float(crops[1, 0, 0, 0])
    (torch.Size([2, 3, 3, 3]), True, 0.5)
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.evidence.receptive_field import RFGrid, receptive_field_map

GREY = 0.5

_GRIDS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[str, Any], RFGrid]] = weakref.WeakKeyDictionary()


def _grid(model: nn.Module, layer: str, input_size: int | tuple[int, int], channels: int) -> RFGrid:
    """``receptive_field_map`` of ``layer``, computed once per model, layer and input size."""
    key = (layer, input_size if isinstance(input_size, int) else tuple(input_size), channels)
    cache = _GRIDS.setdefault(model, {})
    if key not in cache:
        cache[key] = receptive_field_map(model, layer, input_size, channels=channels)
    return cache[key]


def _offset(lo: int, hi: int, full: int, n: int) -> int:
    """Where a clipped interval ``[lo, hi)`` of an axis of ``n`` pixels sits in the full field of ``full``."""
    missing = full - (hi - lo)
    if missing <= 0 or lo > 0:
        return 0  # not clipped, or clipped at the far border only: pad after
    if hi < n:
        return missing  # clipped at the near border (lo == 0): pad before
    return missing // 2  # field wider than the image: centre it


def crops_at(
    dataset: Any,
    indices: list[int],
    positions: list[tuple[int, int]] | list[list[int]],
    model: nn.Module,
    layer: str,
    *,
    input_size: int | tuple[int, int],
) -> torch.Tensor:
    """The receptive-field crops of ``layer`` at ``positions[n] = (x, y)`` of items ``indices[n]`` -> ``[n, C_img, h, w]``.

    ``dataset`` is indexable by dataset index (``dataset[i] -> [C_img, H, W]``); borders are padded as in
    ``example_crops``, which calls this.
    """
    if not indices:
        raise MechscopeError("crops_at needs at least one (index, position)")
    images = [(dataset[int(i)], p) for i, p in zip(indices, positions, strict=True)]
    first = torch.as_tensor(images[0][0])
    grid = _grid(model, layer, input_size, int(first.shape[0]))
    (h, w), (height, width) = grid.size, grid.input_size
    out = torch.full((len(images), first.shape[0], h, w), GREY, dtype=first.dtype)
    for n, (image, (x, y)) in enumerate(images):
        top, left, bottom, right = grid.box(int(x), int(y))
        r, c = _offset(top, bottom, h, height), _offset(left, right, w, width)
        out[n, :, r:r + bottom - top, c:c + right - left] = torch.as_tensor(image)[:, top:bottom, left:right]
    return out
