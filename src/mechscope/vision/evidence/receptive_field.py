"""Receptive fields: the box of input pixels that can influence a unit, for any image model.

Dataset examples show "the part of the image a unit sees"; this module finds that part by *gradient probing*
rather than by reading the architecture, so it works for any ``nn.Module`` that takes ``[batch, C, H, W]``
images (custom padding such as TensorFlow "SAME", branches, concatenations, pools written as functions).

Method.  The unit's activation (summed over channels with random positive weights, or one channel) is
backpropagated to a batch of uniform-noise images, and the field is the bounding box of pixels with a
non-zero gradient in any image.  Piecewise-linear operations would hide paths behind zero gradients (an
inactive ReLU, a max-pool's losing cells), so while probing they are made *straight-through*: their forward
value is unchanged but their gradient is that of the identity (ReLU, ReLU6, hardtanh, clamp) or of an average
pool over the same windows (max-pool, padded cells excluded).  This is done with a ``TorchFunctionMode``, so it
covers ``nn.ReLU``/``nn.MaxPool2d`` modules and functional calls alike.  The model runs in eval mode (dropout
off, batch-norm statistics fixed; the modes are restored) and only up to ``layer`` (``capture``'s early exit).

Guarantee.  A pixel gets a non-zero straight-through gradient only if the computation connects it to the unit,
and every connected pixel gets one unless random sums cancel exactly (probability zero; the union over
``samples`` noise images and random channel weights guards against it).  The box is the bounding box of that
structural field: for piecewise-linear nets an upper bound of the pixels that change the unit on any one image
(an inactive ReLU can hide some there), and exactly the field of the ReLU-free net, which the tests check pixel
by pixel against brute force.  (In-place ReLUs return a new tensor while probing.)

Boxes are half-open ``(top, left, bottom, right)`` in pixels, clipped to the image; ``top``/``bottom`` index the
first spatial axis, Lucid's ``x`` (``[batch, channel, x, y]``), so ``image[..., top:bottom, left:right]`` is the crop.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1))
    >>> rf = receptive_field(net, "2", 16, position=(3, 3))
    >>> rf.box, rf.size
    ((4, 4, 9, 9), (5, 5))
    >>> receptive_field(net, "2", 16, position=(0, 0)).box   # clipped at the border
    (0, 0, 3, 3)
    >>> grid = receptive_field_map(net, "2", 16)
    >>> grid.shape, grid.box(3, 3), tuple(grid.crop(torch.rand(3, 16, 16), 3, 3).shape)
    ((8, 8), (4, 4, 9, 9), (3, 5, 5))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from mechscope.capture import as_map, capture
from mechscope.devices import eval_mode, placement
from mechscope.errors import MechscopeError
from mechscope.units import Unit, parse

Box = tuple[int, int, int, int]
Interval = tuple[int, int]

# ---- straight-through piecewise-linear operations ----------------------------------------------------------


def _identity_through(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, the gradient of the identity with respect to ``x`` in the backward."""
    return x + (value - x).detach()


def _pool_through(value: torch.Tensor, x: torch.Tensor, kernel: Any, stride: Any, padding: Any,
                  dilation: Any) -> torch.Tensor:
    """A max-pool's ``value`` (``[B, C, X, Y]``) whose gradient reaches every real cell of each window."""
    pair = lambda v, d: tuple(v) if isinstance(v, (tuple, list)) else (d if v is None else v,) * 2  # noqa: E731
    k, d, p = pair(kernel, 1), pair(dilation, 1), pair(padding, 0)
    s = pair(stride, None) if stride not in (None, [], ()) else k
    if x.dim() != 4:  # unbatched input: keep max-pool's own gradient
        return value
    c = x.shape[1]
    finite = torch.where(torch.isfinite(x), x, torch.zeros_like(x))  # -inf padding (TF "SAME" pools)
    # ceil_mode can need more windows than floor division gives: pad after until the sizes match.
    extra = [max(0, (value.shape[2 + i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 - x.shape[2 + i] - 2 * p[i])
             for i in range(2)]
    finite = F.pad(finite, (p[1], p[1] + extra[1], p[0], p[0] + extra[0]))
    ones = torch.ones(c, 1, *k, dtype=x.dtype, device=x.device)
    summed = F.conv2d(finite, ones, stride=s, dilation=d, groups=c)[..., : value.shape[2], : value.shape[3]]
    return value + (summed - summed.detach())


_THROUGH_IDENTITY: set[Callable] = {
    F.relu, F.relu6, F.hardtanh, torch.relu, torch.Tensor.relu, torch.relu_, torch.Tensor.relu_,
    torch.clamp, torch.clip, torch.clamp_min, torch.Tensor.clamp, torch.Tensor.clip, torch.Tensor.clamp_min,
}


class _StraightThrough(TorchFunctionMode):
    """Make ReLU-like ops and max-pools pass gradients to every input that could matter; values unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = dict(kwargs or {})
        if func in _THROUGH_IDENTITY:
            kwargs.pop("inplace", None)
            x = args[0] if args else kwargs["input"]
            out = func(*args, **kwargs) if not func.__name__.endswith("_") else x.detach().relu()
            return _identity_through(out, x) if out.shape == x.shape else out
        if func is F.max_pool2d and not kwargs.get("return_indices", False):
            names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
            bound = {**dict(zip(names, args)), **kwargs}
            x = bound["input"]
            out = func(*args, **kwargs)
            return _pool_through(out, x, bound["kernel_size"], bound.get("stride"), bound.get("padding", 0),
                                 bound.get("dilation", 1))
        return func(*args, **kwargs)


# ---- probing -------------------------------------------------------------------------------------------------


def _size2(input_size: int | Sequence[int]) -> tuple[int, int]:
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or min(size) < 1:
        raise MechscopeError(f"input_size must be an int or (height, width) of positive ints, not {input_size!r}")
    return int(size[0]), int(size[1])


def _probe(model: nn.Module, layer: str, size: tuple[int, int], positions: list[tuple[int, int]],
           channel: int | None, channels: int, samples: int, seed: int, chunk: int = 32) -> list[torch.Tensor]:
    """For each position, the ``[H, W]`` mask of pixels with a non-zero straight-through gradient."""
    where = placement(model)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(samples, channels, *size, generator=gen)
    masks: list[torch.Tensor] = []
    with eval_mode(model):
        for start in range(0, len(positions), chunk):
            batch = positions[start:start + chunk]
            x = noise.repeat(len(batch), 1, 1, 1).to(**where).requires_grad_(True)
            with _StraightThrough():
                act = as_map(capture(model, x, layer)[layer], layer, "receptive fields")
            xs = torch.tensor([p[0] for p in batch for _ in range(samples)], device=where["device"])
            ys = torch.tensor([p[1] for p in batch for _ in range(samples)], device=where["device"])
            picked = act[torch.arange(len(xs), device=xs.device), :, xs, ys]  # [batch, C]
            if channel is None:  # every channel, with random positive weights so that nothing cancels
                picked = picked @ (torch.rand(picked.shape[1], generator=gen).to(**where) + 0.5)
            elif 0 <= channel < picked.shape[1]:
                picked = picked[:, channel]
            else:
                raise MechscopeError(f"channel {channel} is out of range for layer {layer!r} ({picked.shape[1]})")
            (grad,) = torch.autograd.grad(picked.sum(), x)
            nonzero = (grad != 0).any(1).view(len(batch), samples, *size).any(1).cpu()
            masks.extend(nonzero)
    return masks


def _box(mask: torch.Tensor, where: str) -> Box:
    """The bounding box ``(top, left, bottom, right)`` of an ``[H, W]`` mask (half-open)."""
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    if len(rows) == 0:
        raise MechscopeError(f"no input pixel influences {where}: its activation does not depend on the image")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _crop(image: torch.Tensor, box: Box) -> torch.Tensor:
    if image.dim() not in (3, 4):
        raise MechscopeError(f"crop takes a [C, H, W] or [B, C, H, W] image, not shape {tuple(image.shape)}")
    top, left, bottom, right = box
    return image[..., top:bottom, left:right]


def _unclipped(intervals: dict[int, Interval], n: int) -> Callable[[int], Interval] | None:
    """The affine law ``p -> (a + p*s, a + p*s + k)`` behind clipped intervals on an axis of ``n`` pixels.

    Starts are exact where they are > 0 and ends where they are < n; returns None where the probes cannot fix
    the law (a field wider than the image) or the intervals do not follow one law.
    """
    starts = {p: iv[0] for p, iv in intervals.items() if iv[0] > 0}
    ends = {p: iv[1] for p, iv in intervals.items() if iv[1] < n}
    stride = None
    for known in (starts, ends):
        ps = sorted(known)
        if len(ps) >= 2:
            stride = (known[ps[-1]] - known[ps[0]]) / (ps[-1] - ps[0])
            break
    if stride is None or not starts or not ends or stride != int(stride):
        return None
    s, (p0, a0), (p1, b0) = int(stride), next(iter(starts.items())), next(iter(ends.items()))
    law = lambda p: (a0 + (p - p0) * s, b0 + (p - p1) * s)  # noqa: E731
    ok = all((max(law(p)[0], 0), min(law(p)[1], n)) == iv for p, iv in intervals.items())
    return law if ok else None


# ---- public API ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RF:
    """The receptive field of one unit.

    ``box`` is ``(top, left, bottom, right)``, half-open, clipped to the image; ``size`` is the field's full
    ``(height, width)`` as away from the borders (the clipped extent on an axis where the field is wider than
    the image); ``unclipped`` is the box before clipping (may reach outside the image) where it is known.
    """

    box: Box
    size: tuple[int, int]
    unclipped: Box | None = None

    @property
    def clipped(self) -> bool:
        """Whether the image border cuts the field."""
        return (self.box[2] - self.box[0], self.box[3] - self.box[1]) != self.size

    def crop(self, image: torch.Tensor) -> torch.Tensor:
        """The field's pixels of a ``[C, H, W]`` or ``[B, C, H, W]`` image -> ``[..., bottom-top, right-left]``."""
        return _crop(image, self.box)


@dataclass(frozen=True)
class RFGrid:
    """The receptive fields of every position of a layer's map (``shape`` = ``(X, Y)``).

    Conv nets' fields are separable (rows depend on ``x`` only, columns on ``y`` only), so the grid stores one
    interval per coordinate: ``rows[x] = (top, bottom)``, ``cols[y] = (left, right)``, clipped to the image.
    """

    rows: tuple[Interval, ...]
    cols: tuple[Interval, ...]
    size: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.cols)

    def box(self, x: int, y: int) -> Box:
        """``(top, left, bottom, right)`` of the unit at ``(x, y)``, clipped to the image."""
        if not (0 <= x < len(self.rows) and 0 <= y < len(self.cols)):
            raise MechscopeError(f"position ({x}, {y}) is outside the map of shape {self.shape}")
        return self.rows[x][0], self.cols[y][0], self.rows[x][1], self.cols[y][1]

    def rf(self, x: int, y: int) -> RF:
        """The ``RF`` of the unit at ``(x, y)``."""
        return RF(self.box(x, y), self.size)

    def crop(self, image: torch.Tensor, x: int, y: int) -> torch.Tensor:
        """The pixels of ``image`` (``[C, H, W]`` or ``[B, C, H, W]``) that the unit at ``(x, y)`` sees."""
        return _crop(image, self.box(x, y))


def _resolve(layer: str, position: tuple[int, int] | None) -> tuple[str, int | None, tuple[int, int] | None]:
    """``(layer, channel or None, position)`` from a layer or unit name."""
    name = parse(layer)
    if isinstance(name, Unit):
        return name.layer, name.channel, position if position is not None else name.position
    return str(name), None, position


def _map_shape(model: nn.Module, layer: str, size: tuple[int, int], channels: int) -> tuple[int, int]:
    with torch.no_grad(), eval_mode(model):
        act = as_map(capture(model, torch.zeros(1, channels, *size, **placement(model)), layer)[layer], layer,
                     "receptive fields")
    return int(act.shape[2]), int(act.shape[3])


def _diagonal(shape: tuple[int, int], coords: Sequence[int]) -> list[tuple[int, int]]:
    """Positions ``(i, i)`` clamped to the map, without repeats."""
    return list(dict.fromkeys((min(max(i, 0), shape[0] - 1), min(max(i, 0), shape[1] - 1)) for i in coords))


def _axes(positions: list[tuple[int, int]], masks: list[torch.Tensor], where: str):
    """Probed boxes -> ``({x: (top, bottom)}, {y: (left, right)})``."""
    rows: dict[int, Interval] = {}
    cols: dict[int, Interval] = {}
    for (x, y), mask in zip(positions, masks):
        top, left, bottom, right = _box(mask, f"{where} at ({x}, {y})")
        rows[x], cols[y] = (top, bottom), (left, right)
    return rows, cols


def _full_size(intervals: dict[int, Interval], n: int) -> int:
    """The field's extent on an axis: from its law, else (wider than the image) the largest clipped extent."""
    law = _unclipped(intervals, n)
    return law(0)[1] - law(0)[0] if law is not None else max(hi - lo for lo, hi in intervals.values())


def receptive_field(model: nn.Module, layer: str, input_size: int | Sequence[int], *,
                    position: tuple[int, int] | None = None, channels: int = 3, samples: int = 2,
                    seed: int = 0) -> RF:
    """The receptive field of the unit at ``position`` ``(x, y)`` of ``layer``'s output map.

    Args:
        model: any ``nn.Module`` taking ``[batch, channels, H, W]`` images.
        layer: a layer name (the field of the position, over all channels) or a unit name (``"mixed3b:379"``,
            one channel; ``"mixed3b:379@7,7"`` also gives the position).
        input_size: ``H`` (square) or ``(H, W)`` of the images.
        position: ``(x, y)`` on the map, ``x`` along its first spatial axis; default the centre.
        samples: noise images the gradient is taken on (their union is the field); ``seed`` seeds them.

    Returns:
        ``RF`` with the clipped box, the full size, and the unclipped box where the geometry fixes it.
    """
    size = _size2(input_size)
    name, channel, position = _resolve(layer, position)
    shape = _map_shape(model, name, size, channels)
    centre = (shape[0] // 2, shape[1] // 2)
    position = centre if position is None else (int(position[0]), int(position[1]))
    if not (0 <= position[0] < shape[0] and 0 <= position[1] < shape[1]):
        raise MechscopeError(f"position {position} is outside layer {name!r}'s map of shape {shape}")
    near = [(min(max(centre[0] + d, 0), shape[0] - 1), min(max(centre[1] + d, 0), shape[1] - 1)) for d in (-1, 0, 1)]
    probes = list(dict.fromkeys([position, *near, (0, 0), (shape[0] - 1, shape[1] - 1)]))
    masks = _probe(model, name, size, probes, channel, channels, samples, seed)
    box = _box(masks[0], f"layer {name!r} at {position}")
    rows, cols = _axes(probes, masks, f"layer {name!r}")
    rows[position[0]], cols[position[1]] = (box[0], box[2]), (box[1], box[3])
    laws = (_unclipped(rows, size[0]), _unclipped(cols, size[1]))
    if None in laws:  # too few exact borders among the probes: probe every coordinate once
        every = _diagonal(shape, range(max(shape)))
        r2, c2 = _axes(every, _probe(model, name, size, every, channel, channels, samples, seed), f"layer {name!r}")
        rows, cols = {**r2, **rows}, {**c2, **cols}
        laws = (_unclipped(rows, size[0]), _unclipped(cols, size[1]))
    full = (_full_size(rows, size[0]), _full_size(cols, size[1]))
    unclipped = None
    if None not in laws:
        (t, b), (l, r) = laws[0](position[0]), laws[1](position[1])
        unclipped = (t, l, b, r)
    return RF(box, full, unclipped)


def receptive_field_map(model: nn.Module, layer: str, input_size: int | Sequence[int], *, channels: int = 3,
                        samples: int = 2, seed: int = 0, verify: int = 4) -> RFGrid:
    """The receptive fields of every position of ``layer``'s map, as an ``RFGrid``.

    Conv nets' fields are separable and move by the layer's effective stride: the interval of coordinate ``p``
    is ``[a + p*s, b + p*s)`` clipped to the image.  Maps up to 16 wide have every coordinate probed (on the
    diagonal: ``max(X, Y)`` probes, not ``X * Y``).  Larger maps have the coordinates near both borders and
    the centre probed, ``a, b, s`` fitted (exactly, to every probe) and the rest extrapolated.  Then ``verify``
    seeded random positions are probed and must match; on a mismatch every coordinate is probed, and a model
    whose fields are still not separable raises ``MechscopeError`` (use ``receptive_field`` per position).
    """
    size = _size2(input_size)
    name, channel, _ = _resolve(layer, None)
    shape = _map_shape(model, name, size, channels)
    n, where = max(shape), f"layer {name!r}"

    def measure(coords: Sequence[int]) -> tuple[dict[int, Interval], dict[int, Interval]]:
        probes = _diagonal(shape, coords)
        return _axes(probes, _probe(model, name, size, probes, channel, channels, samples, seed), where)

    def build(rows: dict[int, Interval], cols: dict[int, Interval]) -> RFGrid | None:
        for iv, count, pixels in ((rows, shape[0], size[0]), (cols, shape[1], size[1])):
            law = _unclipped(iv, pixels)
            for p in range(count):
                if p not in iv and law is not None:
                    iv[p] = (max(law(p)[0], 0), min(law(p)[1], pixels))
            if len(iv) < count:
                return None
        full = (_full_size(rows, size[0]), _full_size(cols, size[1]))
        return RFGrid(tuple(rows[x] for x in range(shape[0])), tuple(cols[y] for y in range(shape[1])), full, size)

    few = sorted({0, 1, 2, n // 2 - 1, n // 2, n // 2 + 1, n - 3, n - 2, n - 1} & set(range(n)))
    grid = build(*measure(range(n) if n <= 16 else few))
    gen = torch.Generator().manual_seed(seed + 1)
    checks = list(dict.fromkeys((int(torch.randint(shape[0], (1,), generator=gen)),
                                 int(torch.randint(shape[1], (1,), generator=gen))) for _ in range(verify)))
    found = [_box(m, f"{where} at {p}") for p, m in
             zip(checks, _probe(model, name, size, checks, channel, channels, samples, seed))] if checks else []
    for attempt in range(2):
        if grid is not None and all(box == grid.box(*p) for p, box in zip(checks, found)):
            return grid
        if attempt == 0 and n > 16:
            grid = build(*measure(range(n)))
    raise MechscopeError(f"the receptive fields of {where} are not separable conv-net fields; "
                         "call receptive_field for each position instead")
