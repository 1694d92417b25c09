"""Weights between units: kernels, expanded weights, weight banding, heatmaps.
(Over 400 lines because the banding measures and heatmaps read the kernels this module extracts, one reading per
function; banding analyses over whole models live in ``vision.circuits.banding``.)

The Circuits thread reads a network's weights directly ("Visualizing Weights", "Weight Banding").  This module
gives those readings as pure functions over any conv model whose layers are named through ``mechscope.units``.

- ``kernel_between(model, "conv2d1:3", "conv2d2_pre_relu:5")`` — the ``[kh, kw]`` kernel of the convolution that
  connects an input channel to an output unit of *adjacent* layers; ``unit_weights`` gives all input channels
  ``[C_in, kh, kw]``.  The target layer's module must be an ``nn.Conv2d``; a post-ReLU name whose
  ``<name>_pre_relu`` is one (``conv2d2``) reads that convolution (a ReLU does not change the kernel).
- ``expanded_weights(model, "mixed3a", "mixed3b:100", 64)`` — the weights between *non-adjacent* layers or
  through bottlenecks, by a **linearized model**: the model runs with ReLU → identity and max-pool → average pool
  over the same windows (``count_include_pad=False``; ``-inf`` padding of TF "SAME" pools counts as 0), which a
  ``TorchFunctionMode`` applies to modules and functional calls alike.  The expanded weight from every channel of
  layer A to one unit of layer B (its channel at the central position unless a position is given) is the gradient
  of that unit with respect to A's activation, ``[C_A, h, w]``, cropped to the bounding box of its non-zero
  entries.  Being a gradient, it ignores biases.  A's activation is replaced by a zero leaf tensor (a forward hook
  on A's module) and B read with ``capture``'s early exit.  Other non-linearities (LRN, sigmoid…) are linearized
  at that zero point.  For adjacent conv layers this is the kernel itself; for two linear convolutions it is their
  composition (tests check both against explicit products).  Choose ``input_size`` large enough that B's central
  unit sees no border, or the support is clipped.
  ``expanded_weights_of(model, A, units, size)`` gives many units of one layer B from one linearized forward pass.
- one-sided NMF of these weights to RGB: ``vision/nmf.py`` (``nmf_rgb``, ``nmf_factors``).
- ``kernel_banding(weights)`` — weight banding **per kernel** (variance shares along rows / columns) and the share
  of kernels banded each way; ``banding(weights)`` pools over kernels, where bands running both ways cancel.
- ``kernel_heatmap(kernel, ax)`` — diverging blue/red (``RdBu_r``, symmetric limits) heatmap of one kernel or
  a row of kernels.

Example::

    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0) and None
    >>> net = nn.Sequential(nn.Identity(), nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(),
    ...                     nn.Conv2d(4, 2, 3, padding=1, bias=False))
    >>> torch.equal(kernel_between(net, "2:1", "3:0"), net[3].weight[0, 1].detach())
    True
    >>> expanded_weights(net, "0", "3:1", 16).shape      # 3x3 after 3x3: a 5x5 support over 3 channels
    torch.Size([3, 5, 5])
    >>> torch.allclose(expanded_weights(net, "2", "3:1", 16), net[3].weight[1])
    True
    >>> rows = torch.arange(5.0)[:, None].expand(5, 5)   # constant along each row: horizontal bands
    >>> round(banding(rows).score, 3)
    1.0
    >>> both = torch.stack([rows, rows.T])               # one horizontal and one vertical kernel
    >>> round(banding(both).score, 3), kernel_banding(both).score.tolist(), kernel_banding(both).shares(0.5)
    (0.0, [1.0, -1.0], {'horizontal': 0.5, 'vertical': 0.5, 'banded': 1.0})
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from mechscope.capture import capture
from mechscope.devices import eval_mode, placement
from mechscope.errors import MechscopeError
from mechscope.units import Unit, layer_table, layer_width, module_path, validate

# ---- kernels between adjacent layers -------------------------------------------------------------------------


def _conv_of(model: nn.Module, layer: str) -> nn.Conv2d:
    """The ``nn.Conv2d`` whose output is ``layer`` (or, for a post-ReLU name, its declared ``*_pre_relu``)."""
    module = model.get_submodule(module_path(model, layer))
    if isinstance(module, nn.Conv2d):
        return module
    pre = f"{layer}_pre_relu"
    if pre in layer_table(model):
        inner = model.get_submodule(module_path(model, pre))
        if isinstance(inner, nn.Conv2d):
            return inner
    raise MechscopeError(
        f"layer {layer!r} is the output of a {type(module).__name__} ({module_path(model, layer)!r}), not an "
        "nn.Conv2d, so it has no kernel; name a convolution's output (e.g. a '*_pre_relu' layer), or use "
        "expanded_weights for layers that are not adjacent"
    )


def layer_kernels(model: nn.Module, layer: str) -> torch.Tensor:
    """All kernels ``[C_out, C_in / groups, kh, kw]`` of the convolution whose output is ``layer`` (a post-ReLU
    name reads its ``*_pre_relu`` convolution), e.g. to compare them under rotation
    (``equivariance.weight_equivariance_matrix``)."""
    return _conv_of(model, validate(model, layer).layer).weight.detach().clone()


def _check_adjacent(model: nn.Module, layer_in: str, conv: nn.Conv2d, layer_out: str,
                    input_shape: tuple[int, ...]) -> None:
    """Run ``model`` on the meta device and check that ``conv`` reads exactly ``layer_in``'s output."""
    import copy

    shadow = copy.deepcopy(model).to("meta")
    path_in = module_path(model, layer_in)
    conv_path = next(p for p, m in model.named_modules() if m is conv)
    seen: dict[str, Any] = {}
    h1 = shadow.get_submodule(path_in).register_forward_hook(lambda _m, _i, out: seen.setdefault("out", out))
    h2 = shadow.get_submodule(conv_path).register_forward_pre_hook(lambda _m, inp: seen.setdefault("in", inp[0]))
    try:
        with torch.no_grad():
            capture(shadow, torch.empty(1, *input_shape, device="meta", dtype=placement(model)["dtype"]),
                    [layer_out, layer_in])
    finally:
        h1.remove()
        h2.remove()
    if seen.get("in") is None or seen.get("in") is not seen.get("out"):
        raise MechscopeError(
            f"layer {layer_in!r} is not the input of the convolution behind {layer_out!r}; "
            "use expanded_weights for layers that are not adjacent"
        )


def unit_weights(model: nn.Module, from_layer: str, to_unit: str | Unit,
                 input_size: int | Sequence[int] | None = None) -> torch.Tensor:
    """The weights from every channel of ``from_layer`` into the unit ``to_unit`` of the adjacent conv layer.

    Args:
        model: any ``nn.Module``; layers named by its ``layer_table`` or by module path.
        from_layer: the layer the convolution reads (e.g. ``"mixed3a_3x3_bottleneck"``).
        to_unit: ``"layer:channel"`` whose module is an ``nn.Conv2d`` (e.g. ``"mixed3a_3x3_pre_relu:5"``).
        input_size: optional model input ``H`` / ``(H, W)`` / ``(C, H, W)`` (``C`` defaults to 3): when given,
            the model runs on the meta device to check that the convolution reads exactly ``from_layer``'s
            output; otherwise only the channel counts are checked.

    Returns:
        ``[C_in, kh, kw]`` (a detached copy of the kernel slice; zeros for input channels outside the unit's group).
    """
    unit = validate(model, to_unit)
    if not isinstance(unit, Unit):
        raise MechscopeError(f"expected a unit such as 'conv2d2_pre_relu:5' as the target, got {str(unit)!r}")
    source = validate(model, from_layer).layer
    conv = _conv_of(model, unit.layer)
    width = layer_width(model, source)
    if width is not None and width != conv.in_channels:
        raise MechscopeError(
            f"layer {source!r} has {width} channels but the convolution behind {unit.layer!r} reads "
            f"{conv.in_channels}: they are not adjacent; use expanded_weights"
        )
    if input_size is not None:
        _check_adjacent(model, source, conv, unit.layer, _input_shape(input_size))
    w = conv.weight.detach()[unit.channel]  # [C_in / groups, kh, kw]
    if conv.groups == 1:
        return w.clone()
    per_in, per_out = conv.in_channels // conv.groups, conv.out_channels // conv.groups
    g = unit.channel // per_out
    full = w.new_zeros(conv.in_channels, *w.shape[1:])
    full[g * per_in:(g + 1) * per_in] = w
    return full


def kernel_between(model: nn.Module, from_unit: str | Unit, to_unit: str | Unit,
                   input_size: int | Sequence[int] | None = None) -> torch.Tensor:
    """The ``[kh, kw]`` kernel connecting channel ``from_unit`` to ``to_unit`` of the adjacent conv layer.

    ``kernel_between(model, "mixed3a_3x3_bottleneck:12", "mixed3a_3x3_pre_relu:5")``; see ``unit_weights``.
    """
    src = validate(model, from_unit)
    if not isinstance(src, Unit):
        raise MechscopeError(f"expected a unit such as 'conv2d1:12' as the source, got {str(src)!r}")
    return unit_weights(model, src.layer, to_unit, input_size)[src.channel]


# ---- expanded weights through a linearized model --------------------------------------------------------------

_IDENTITY: set[Callable] = {F.relu, F.relu6, torch.relu, torch.Tensor.relu, torch.relu_, torch.Tensor.relu_}
if hasattr(F, "relu_"):
    _IDENTITY.add(F.relu_)


def _avg_stand_in(bound: dict[str, Any]) -> torch.Tensor:
    """``avg_pool2d`` over the windows of the max-pool described by ``bound``."""
    x = bound["input"]
    dilation = bound.get("dilation", 1)
    if dilation not in (1, (1, 1), [1, 1]):
        raise MechscopeError("the linearized model cannot stand in for a dilated max-pool (dilation != 1)")
    stride = bound.get("stride")
    x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))  # -inf padding of TF "SAME" pools
    return F.avg_pool2d(x, bound["kernel_size"], stride if stride not in (None, [], ()) else None,
                        bound.get("padding", 0), bound.get("ceil_mode", False), count_include_pad=False)


class Linearized(TorchFunctionMode):
    """Within this mode ReLU is the identity and max-pool an average pool over the same windows.

    Covers ``nn.ReLU`` / ``nn.MaxPool2d`` modules and functional calls (``F.relu``, ``torch.relu``,
    ``x.relu()``, ``F.max_pool2d``, ``F.adaptive_max_pool2d``); everything else runs unchanged.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = dict(kwargs or {})
        if func in _IDENTITY:
            return args[0] if args else kwargs["input"]
        if func is F.max_pool2d:
            names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
            bound = {**dict(zip(names, args)), **kwargs}
            if bound.get("return_indices"):
                raise MechscopeError("the linearized model cannot stand in for a max-pool that returns indices")
            return _avg_stand_in(bound)
        if func is F.adaptive_max_pool2d:
            names = ("input", "output_size", "return_indices")
            bound = {**dict(zip(names, args)), **kwargs}
            return F.adaptive_avg_pool2d(bound["input"], bound["output_size"])
        return func(*args, **kwargs)


def _input_shape(input_size: int | Sequence[int]) -> tuple[int, int, int]:
    size = (input_size,) * 2 if isinstance(input_size, int) else tuple(int(s) for s in input_size)
    if len(size) == 2:
        size = (3, *size)
    if len(size) != 3 or min(size) < 1:
        raise MechscopeError(f"input_size must be H, (H, W) or (C, H, W) of positive ints, not {input_size!r}")
    return size  # type: ignore[return-value]


def expanded_weights(model: nn.Module, layer_a: str, unit_b: str | Unit, input_size: int | Sequence[int],
                     *, crop: bool = True) -> torch.Tensor:
    """Expanded weights from every channel of ``layer_a`` to the unit ``unit_b``, through the linearized model.

    Args:
        model: any image model ``[batch, C, H, W] -> ...``; layers named as for ``capture``.
        layer_a: the earlier layer (``"mixed3a"``; a unit name uses its layer).
        unit_b: ``"layer:channel"`` or ``"layer:channel@x,y"`` (default position: the centre of the map).
        input_size: model input ``H``, ``(H, W)`` or ``(C, H, W)`` (``C`` defaults to 3).
        crop: crop to the bounding box of the non-zero weights (default); ``False`` keeps A's whole map.

    Returns:
        ``[C_A, h, w]``: the gradient of the unit with respect to A's activation in the linearized model
        (bias-free), cropped to its support.
    """
    return expanded_weights_of(model, layer_a, [unit_b], input_size, crop=crop)[0]


def expanded_weights_of(model: nn.Module, layer_a: str, units: Sequence[str | Unit], input_size: int | Sequence[int],
                        *, crop: bool = True) -> list[torch.Tensor]:
    """``expanded_weights`` of each of ``units`` (of one layer B): one forward pass of the linearized model for all
    of them, then one backward pass per unit, so each ``[C_A, h, w]`` is bitwise its own ``expanded_weights``.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Identity(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
    >>> [torch.equal(w, expanded_weights(net, "0", f"3:{c}", 16)) for c, w in
    ...  enumerate(expanded_weights_of(net, "0", ["3:0", "3:1"], 16))]
    [True, True]
    """
    a_layer = validate(model, layer_a).layer
    targets = [validate(model, u) for u in units]
    for unit in targets:
        if not isinstance(unit, Unit):
            raise MechscopeError(f"expected a unit such as 'mixed3b:5' as the target, got {str(unit)!r}")
    if len({u.layer for u in targets}) > 1:
        raise MechscopeError(f"units of one layer only, got {sorted({u.layer for u in targets})}")
    if not targets:
        return []
    b_layer = targets[0].layer
    where = placement(model)
    x = torch.zeros(1, *_input_shape(input_size), **where)
    a_module = model.get_submodule(module_path(model, a_layer))
    leaf: dict[str, torch.Tensor] = {}

    def replace(_m: nn.Module, _inputs: Any, output: Any) -> torch.Tensor | None:
        if "a" in leaf:  # a module called again: only its first output is layer A
            return None
        if not isinstance(output, torch.Tensor):
            raise MechscopeError(f"layer {a_layer!r} returned {type(output).__name__}, not a tensor")
        leaf["a"] = torch.zeros_like(output).requires_grad_(True)
        return leaf["a"]

    handle = a_module.register_forward_hook(replace)
    try:
        with eval_mode(model), torch.enable_grad(), Linearized():
            b = capture(model, x, [b_layer])[b_layer]
    finally:
        handle.remove()
    if "a" not in leaf:
        raise MechscopeError(f"layer {a_layer!r} does not run before {b_layer!r} in the forward pass")
    if b.dim() != 4:
        raise MechscopeError(f"layer {b_layer!r} has shape {tuple(b.shape)}; expanded weights need a "
                             "[batch, C, x, y] map")
    return [_gradient(b, leaf["a"], unit, a_layer, input_size, crop, last=i == len(targets) - 1)
            for i, unit in enumerate(targets)]


def _gradient(b: torch.Tensor, a: torch.Tensor, unit: Unit, a_layer: str, input_size: Any, crop: bool,
              last: bool) -> torch.Tensor:
    """The gradient of ``unit`` (its position in ``b``) with respect to ``a``, cropped to its support."""
    px, py = unit.position if unit.position is not None else (b.shape[2] // 2, b.shape[3] // 2)
    if not (0 <= px < b.shape[2] and 0 <= py < b.shape[3]):
        raise MechscopeError(f"position ({px}, {py}) is outside layer {unit.layer!r}'s "
                             f"{b.shape[2]}x{b.shape[3]} map at input size {input_size}")
    (grad,) = torch.autograd.grad(b[0, unit.channel, px, py], a, allow_unused=True, retain_graph=not last)
    if grad is None or a.dim() != 4:
        raise MechscopeError(f"{unit} does not depend on layer {a_layer!r} (its output is not used on the way "
                             f"to {unit.layer!r}); name a layer on the path, e.g. the post-ReLU layer")
    g = grad[0].detach()
    if not crop:
        return g
    nz = g.abs().amax(0) > 0
    if not nz.any():
        return g[:, :0, :0]
    rows, cols = nz.any(1).nonzero()[:, 0], nz.any(0).nonzero()[:, 0]
    return g[:, int(rows[0]): int(rows[-1]) + 1, int(cols[0]): int(cols[-1]) + 1].clone()


# ---- weight banding ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Banding:
    """Horizontal vs vertical structure of a set of kernels (see ``banding``)."""

    horizontal: float
    vertical: float

    @property
    def score(self) -> float:
        """``horizontal - vertical`` in ``[-1, 1]``: +1 pure horizontal bands, -1 pure vertical, ~0 neither."""
        return self.horizontal - self.vertical


def banding(weights: torch.Tensor) -> Banding:
    """Weight banding of kernels ``[kh, kw]``, ``[C, kh, kw]`` or ``[C_out, C_in, kh, kw]``.

    Definition.  For each kernel ``K`` (``kh x kw``, rows = first spatial axis), the total variance is
    ``var(K)`` over its entries; the *row* variance is the variance of ``K``'s row means broadcast over the
    kernel (``var(K.mean(1))``), the *column* variance that of its column means.  ``horizontal`` = Σ row variance
    / Σ total variance over all kernels, ``vertical`` = Σ column variance / Σ total variance: the share of the
    weights' variance explained by a kernel constant along each row (horizontal bands) or along each column
    (vertical bands).  Kernels with zero variance contribute nothing.  Random kernels score about
    ``(kh-1)/(kh*kw-1)`` on each side, so ``score`` ≈ 0 for square ones.  Pooled over kernels, horizontal and
    vertical bands in the same layer cancel in ``score``: ``kernel_banding`` scores each kernel.
    """
    w = weights.detach().double()
    if w.dim() < 2:
        raise MechscopeError(f"weights must be [..., kh, kw], got shape {tuple(w.shape)}")
    k = w.reshape(-1, *w.shape[-2:])
    total = k.flatten(1).var(1, unbiased=False).sum()
    if total <= 0:
        return Banding(0.0, 0.0)
    rows = k.mean(2).var(1, unbiased=False).sum()
    cols = k.mean(1).var(1, unbiased=False).sum()
    return Banding(float(rows / total), float(cols / total))


@dataclass(frozen=True)
class KernelBanding:
    """Per kernel ``[N]``: shares of its variance explained by row means / column means (``kernel_banding``)."""

    horizontal: torch.Tensor
    vertical: torch.Tensor

    @property
    def score(self) -> torch.Tensor:
        """``horizontal - vertical`` per kernel ``[N]``, in ``[-1, 1]``: +1 a pure horizontal band, -1 vertical."""
        return self.horizontal - self.vertical

    def shares(self, threshold: float = 0.5) -> dict[str, float]:
        """Share of the kernels with ``score >= threshold`` (``horizontal``), ``<= -threshold`` (``vertical``)
        and either (``banded``)."""
        if not 0 < threshold <= 1:
            raise MechscopeError(f"threshold must be in (0, 1], got {threshold}")
        s, n = self.score, max(int(self.score.numel()), 1)
        h, v = int((s >= threshold).sum()), int((s <= -threshold).sum())
        return {"horizontal": round(h / n, 4), "vertical": round(v / n, 4), "banded": round((h + v) / n, 4)}


def kernel_banding(weights: torch.Tensor) -> KernelBanding:
    """Banding of every kernel ``K`` of ``weights`` (``[kh, kw]``, ``[C, kh, kw]`` or ``[C_out, C_in, kh, kw]``):
    ``horizontal = var(K.mean(1)) / var(K)`` (1 when constant along each row), ``vertical = var(K.mean(0)) /
    var(K)``; 0 for a constant kernel.  Scale-free: every kernel counts alike whatever its norm.  Random kernels
    score about ``(kh-1)/(kh*kw-1)`` each side, spread wider for small kernels: compare with the layer untrained.
    """
    w = weights.detach().double()
    if w.dim() < 2:
        raise MechscopeError(f"weights must be [..., kh, kw], got shape {tuple(w.shape)}")
    k = w.reshape(-1, *w.shape[-2:])
    total = k.flatten(1).var(1, unbiased=False)
    flat = total <= 1e-20 * k.flatten(1).square().mean(1)   # constant up to rounding, at its own scale
    safe = total.masked_fill(flat, 1.0)
    rows = (k.mean(2).var(1, unbiased=False) / safe).masked_fill(flat, 0.0)
    cols = (k.mean(1).var(1, unbiased=False) / safe).masked_fill(flat, 0.0)
    return KernelBanding(rows.float(), cols.float())


# ---- pictures ----------------------------------------------------------------------------------------------------


def kernel_heatmap(kernel: torch.Tensor, ax: Any = None, *, vmax: float | None = None,
                   title: str | None = None) -> Any:
    """Diverging blue/red heatmap (``RdBu_r``, limits ``±vmax``, default the largest ``|w|``) of a kernel
    ``[kh, kw]``, or of ``[C, kh, kw]`` kernels side by side (one-pixel gaps).  Returns the matplotlib axes."""
    import matplotlib.pyplot as plt

    k = kernel.detach().float().cpu()
    if k.dim() == 2:
        k = k[None]
    if k.dim() != 3:
        raise MechscopeError(f"kernel must be [kh, kw] or [C, kh, kw], got shape {tuple(kernel.shape)}")
    c, kh, kw = k.shape
    grid = torch.full((kh, c * (kw + 1) - 1), float("nan"))
    for i in range(c):
        grid[:, i * (kw + 1): i * (kw + 1) + kw] = k[i]
    top = float(vmax) if vmax is not None else float(k.abs().max()) or 1.0
    if ax is None:
        _, ax = plt.subplots(figsize=(max(1.5, 0.35 * grid.shape[1]), max(1.5, 0.35 * kh)))
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="white")
    ax.imshow(grid.numpy(), cmap=cmap, vmin=-top, vmax=top, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def banding_plot(weights: torch.Tensor, ax: Any = None, n: int = 16) -> Any:
    """The picture of ``banding``: the ``n`` kernels of ``weights`` (``[..., kh, kw]``) with the largest variance,
    each scaled to its own largest ``|w|``, side by side, titled with the horizontal / vertical shares."""
    k = weights.detach().float().reshape(-1, *weights.shape[-2:])
    top = k.flatten(1).var(1, unbiased=False).argsort(descending=True)[:n]
    chosen = k[top] / k[top].flatten(1).abs().amax(1).clamp(min=1e-12)[:, None, None]
    b = banding(weights)
    per = kernel_banding(weights).shares(0.5)
    return kernel_heatmap(chosen, ax, vmax=1.0,
                          title=f"banding {b.score:+.2f} (horizontal {b.horizontal:.2f}, vertical {b.vertical:.2f}); "
                                f"kernels banded: {per['horizontal']:.0%} horizontal, {per['vertical']:.0%} vertical")
