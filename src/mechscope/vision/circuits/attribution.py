"""Linear attribution of a unit to the previous layer's units and positions (activation × gradient).

As in the Circuits thread and *The Building Blocks of Interpretability*: a unit's value is attributed to each
channel and position of an earlier ("source") layer as that layer's activation times the gradient of the unit
with respect to it, ``values[b, c, x, y] = a[b, c, x, y] * d unit_b / d a[b, c, x, y]``.

**Completeness.** Where the model is linear between the source layer and the unit (a convolution with no
ReLU in between, e.g. ``mixed3b_pre_relu`` from ``mixed3a`` through a 1×1 branch), the attributions plus the
bias terms sum exactly to the unit's value: ``values.sum() + bias == total``; ``residual`` (``total`` minus the
summed attributions) is then the bias.  Through non-linearities it is a first-order (local linear) account.

Example (a 1×1 convolution reading the three input channels with weights 1, 2, -4; the source layer ``"0"``
is the identity, i.e. the input)::

    >>> import torch
    >>> from torch import nn
    >>> from mechscope.vision.circuits.attribution import attribute
    >>> net = nn.Sequential(nn.Identity(), nn.Conv2d(3, 1, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.copy_(torch.tensor([1.0, 2.0, -4.0]).view(1, 3, 1, 1))
    >>> attr = attribute(net, torch.ones(1, 3, 4, 4), "1:0@2,1", "0")
    >>> attr.by_channel, attr.total
    (tensor([[ 1.,  2., -4.]]), tensor([-1.]))
    >>> attr.top(2)
    [(2, -4.0), (1, 2.0)]
    >>> attr.values[0, :, 2, 1], attr.spatial.abs().sum().item()   # all at the unit's own position
    (tensor([ 1.,  2., -4.]), 1.0)

Positions follow ``units.py``: ``x`` indexes the first spatial axis of ``[batch, channel, x, y]``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mechscope.capture import as_map, capture
from mechscope.devices import eval_mode, placement
from mechscope.errors import MechscopeError
from mechscope.units import Layer, Unit, parse, validate

REDUCTIONS = ("max", "sum")


@dataclass(frozen=True)
class Attribution:
    """A unit's value attributed to the channels and positions of a source layer.

    Attributes:
        unit: the unit attributed, as named (``"mixed3b:379"`` or ``"mixed3b:379@7,7"``).
        source_layer: the layer attributed to.
        values: ``[batch, C_src, x, y]`` activation × gradient (detached).
        total: ``[batch]`` the unit's value (at its position, or summed over positions with ``reduce="sum"``).
        positions: ``[batch, 2]`` the ``(x, y)`` of the unit read in each image; ``None`` with ``reduce="sum"``.
        unit_grid: ``(x, y)`` size of the unit's layer; ``input_size`` ``(H, W)`` of the images.
    """

    unit: str
    source_layer: str
    values: torch.Tensor
    total: torch.Tensor
    positions: torch.Tensor | None
    unit_grid: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def by_channel(self) -> torch.Tensor:
        """``[batch, C_src]``: attributions summed over positions."""
        return self.values.sum((2, 3))

    @property
    def spatial(self) -> torch.Tensor:
        """``[batch, x, y]``: attributions summed over channels."""
        return self.values.sum(1)

    @property
    def residual(self) -> torch.Tensor:
        """``[batch]``: ``total`` minus the summed attributions (the bias terms, for a linear path)."""
        return self.total - self.values.sum((1, 2, 3))

    def top(self, k: int = 10, image: int = 0) -> list[tuple[int, float]]:
        """The ``k`` source channels with the largest ``|contribution|`` in one image: ``[(channel, value)]``."""
        if not 0 <= image < len(self.values):
            raise MechscopeError(f"image {image} is out of range: this attribution has {len(self.values)} images")
        row = self.by_channel[image]
        order = torch.argsort(row.abs(), descending=True, stable=True)[: max(0, int(k))]
        return [(int(c), float(row[c])) for c in order]

    def _repr_png_(self) -> bytes:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 3.2))
        FigureCanvasAgg(fig)
        attribution_map_plot(self, 0, ax=fig.add_subplot(1, 2, 1))
        top_contributors_plot(self, 10, 0, ax=fig.add_subplot(1, 2, 2))
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        return buf.getvalue()


def _order_error(model: nn.Module, unit: Unit, source: str, unit_act: torch.Tensor, src: torch.Tensor) -> MechscopeError:
    """Why the unit does not depend on the source layer: the source comes after it, or feeds elsewhere."""
    after = src.requires_grad and torch.autograd.grad(src.sum(), unit_act, allow_unused=True)[0] is not None
    if after:
        return MechscopeError(
            f"source layer {source!r} comes after the unit's layer {unit.layer!r} in {type(model).__name__}'s "
            f"forward pass: attribution splits a unit into the contributions of an earlier layer, so the source "
            f"must run before {unit.layer!r} (e.g. the layer just before it)")
    return MechscopeError(
        f"unit {str(unit)!r} does not depend on layer {source!r} (it is on another branch of "
        f"{type(model).__name__}); name a layer that feeds {unit.layer!r}")


def attribute(model: nn.Module, images: torch.Tensor, unit: str | Unit, source_layer: str, *,
              position: tuple[int, int] | None = None, reduce: str = "max") -> Attribution:
    """Attribute a unit to the channels and positions of an earlier layer by activation × gradient.

    Args:
        model: any ``nn.Module``; run in eval mode (each module's mode is restored afterwards).  No gradient is
            left on its parameters.
        images: ``[batch, 3, H, W]`` model inputs (moved to the model's device and dtype).
        unit: ``"layer:channel"`` or ``"layer:channel@x,y"``.
        source_layer: the layer to attribute to; it must run before the unit's layer and feed it.
        position: ``(x, y)`` where the unit is read, instead of ``@x,y`` in its name.  Without either, each
            image's spatial argmax of the unit (``reduce="max"``) or the unit summed over positions
            (``reduce="sum"``).
        reduce: ``"max"`` or ``"sum"``, used when no position is given.

    Returns:
        ``Attribution`` with ``values [batch, C_src, x, y]``, ``total [batch]``, ``by_channel``, ``spatial``,
        ``residual`` and ``top(k)``.
    """
    parsed = validate(model, unit)
    if not isinstance(parsed, Unit):
        raise MechscopeError(f"expected a unit such as 'mixed3b:379' or 'mixed3b:379@7,7', got {str(parsed)!r}")
    if not isinstance(validate(model, source_layer), Layer):
        raise MechscopeError(f"source_layer must be a layer name such as 'mixed3a', not {source_layer!r}")
    source_layer = str(parse(source_layer))
    if reduce not in REDUCTIONS:
        raise MechscopeError(f"reduce must be one of {REDUCTIONS}, not {reduce!r}")
    if position is not None and parsed.position is not None and tuple(position) != parsed.position:
        raise MechscopeError(f"two positions given: {parsed.position} in {str(parsed)!r} and position={tuple(position)}")
    pos = tuple(int(p) for p in position) if position is not None else parsed.position
    if pos is not None and reduce == "sum":
        raise MechscopeError("reduce='sum' sums the unit over all positions; give no position with it")
    if source_layer == parsed.layer:
        raise MechscopeError(f"source layer {source_layer!r} is the unit's own layer; attribution needs an "
                             f"earlier layer that feeds {parsed.layer!r}")
    if images.dim() != 4:
        raise MechscopeError(f"images must be [batch, 3, H, W], got shape {tuple(images.shape)}")

    x = images.detach().to(**placement(model)).requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        acts = capture(model, x, [parsed.layer, source_layer])
        unit_act = as_map(acts[parsed.layer], parsed.layer, "attribution")
        src = as_map(acts[source_layer], source_layer, "attribution")
        channel_map = unit_act[:, parsed.channel]  # [batch, x, y]
        gx, gy = channel_map.shape[-2:]
        batch = torch.arange(len(channel_map), device=channel_map.device)
        if reduce == "sum" and pos is None:
            value, positions = channel_map.sum((1, 2)), None
        else:
            if pos is None:
                flat = channel_map.detach().flatten(1).argmax(1)
                positions = torch.stack([flat // gy, flat % gy], 1)
            else:
                if not (0 <= pos[0] < gx and 0 <= pos[1] < gy):
                    raise MechscopeError(f"position {pos} is outside layer {parsed.layer!r}, whose grid is "
                                         f"{gx}×{gy} (valid x: 0..{gx - 1}, y: 0..{gy - 1})")
                positions = torch.tensor([pos] * len(channel_map), device=channel_map.device)
            value = channel_map[batch, positions[:, 0], positions[:, 1]]
        grad = None
        if src.requires_grad:
            grad = torch.autograd.grad(value.sum(), src, retain_graph=True, allow_unused=True)[0]
        if grad is None:
            raise _order_error(model, parsed, source_layer, unit_act, src)
        values = (src * grad).detach()
    return Attribution(unit=str(unit), source_layer=source_layer, values=values, total=value.detach(),
                       positions=None if positions is None else positions.cpu(), unit_grid=(gx, gy),
                       input_size=(int(images.shape[-2]), int(images.shape[-1])))


def _axes(ax: Any, size: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig.add_subplot(1, 1, 1)


def attribution_map_plot(attr: Attribution, image_index: int = 0, ax: Any = None, *, grid: str = "input") -> Any:
    """Heatmap of ``attr.spatial[image_index]`` (diverging ``RdBu_r``, symmetric about 0); returns the axes.

    ``grid="input"`` stretches the source layer's grid over the input image's pixels (axes in input pixels);
    ``grid="layer"`` keeps the source layer's own cells.  Rows are ``x``, columns ``y``.  Without ``ax`` a new
    Agg figure is made (never shown).
    """
    if grid not in ("input", "layer"):
        raise MechscopeError(f"grid must be 'input' or 'layer', not {grid!r}")
    if not 0 <= image_index < len(attr.values):
        raise MechscopeError(f"image {image_index} is out of range: this attribution has {len(attr.values)} images")
    ax = _axes(ax, (3.6, 3.2))
    heat = attr.spatial[image_index].detach().float().cpu().numpy()
    bound = float(abs(heat).max()) or 1.0
    h, w = attr.input_size if grid == "input" else heat.shape
    image = ax.imshow(heat, cmap="RdBu_r", vmin=-bound, vmax=bound, extent=(0, w, h, 0), interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(f"{attr.unit} ← {attr.source_layer}", fontsize=9)
    ax.set_xlabel("y")
    ax.set_ylabel("x")
    return ax


def top_contributors_plot(attr: Attribution, k: int = 10, image_index: int = 0, ax: Any = None) -> Any:
    """Horizontal bars of the ``k`` largest ``|contribution|`` source channels (red positive, blue negative,
    largest on top); returns the axes."""
    top = attr.top(k, image_index)
    ax = _axes(ax, (3.6, 0.3 * max(len(top), 3) + 0.9))
    labels = [f"{attr.source_layer}:{c}" for c, _ in top][::-1]
    values = [v for _, v in top][::-1]
    ax.barh(range(len(values)), values, color=["#b2182b" if v > 0 else "#2166ac" for v in values])
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    ax.set_xlabel("contribution (activation × gradient)")
    ax.set_title(f"top contributors to {attr.unit}", fontsize=9)
    return ax


__all__ = ["Attribution", "attribute", "attribution_map_plot", "top_contributors_plot", "REDUCTIONS"]
