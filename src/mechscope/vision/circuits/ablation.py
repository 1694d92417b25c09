"""Unit ablation: switch off channels of a layer by forward hook, to measure what a network uses them for.

The Curve Detectors paper's "feature use" evidence removes a family of units and watches what the network can
no longer do.  Two ways to remove a channel:

- ``mode="zero"`` — its activation is set to 0 everywhere (for a post-ReLU layer, "never fires");
- ``mode="mean"`` — its activation is set to its mean over a dataset (``channel_means``): the unit still passes
  on its average, but no longer says anything about the image in front of it.  ``means`` is ``[C]`` (one value
  per channel) or ``[C, h, w]`` (a mean per position, which keeps what the unit does at the borders).

``ablate_units`` is a context manager: inside it, every forward pass of the model sees the ablated layer; the
hook is removed on leaving, also on error.  The layer is named as everywhere in mechscope (``mechscope.units``);
the hook replaces the module's output by a copy, so captured tensors from earlier passes are not touched.
``ablated(act, channels, mode, means)`` is what the hook returns, as a pure function: ablate a cached activation
and run only the layers after it, instead of the whole model, when many unit sets are compared.
``ablation_drops`` does that for a table of unit sets and any score of the output; ``random_unit_sets`` draws
the same-size random sets that a chosen set's effect is compared against.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    >>> x = torch.rand(2, 3, 5, 5)
    >>> with torch.no_grad(), ablate_units(net, "1", [0, 2]):
    ...     acts = net[:2](x)
    >>> bool(acts[:, [0, 2]].eq(0).all()), bool(acts[:, [1, 3]].eq(net[:2](x)[:, [1, 3]]).all())
    (True, True)
    >>> means = channel_means(net, "1", [x])                      # [C, h, w], over the images given
    >>> with torch.no_grad(), ablate_units(net, "1", [3], mode="mean", means=means):
    ...     torch.allclose(net[:2](x)[:, 3], means[3].expand(2, 5, 5))
    True
    >>> torch.equal(net[:2](x), torch.relu(net[0](x)))            # restored on exit
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn

from mechscope.capture import capture
from mechscope.errors import MechscopeError
from mechscope.units import module_path

MODES = ("zero", "mean")


def _channels(channels: Sequence[int], width: int, layer: str) -> torch.Tensor:
    idx = torch.as_tensor(list(channels), dtype=torch.long)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= width):
        raise MechscopeError(f"channels {sorted(set(idx.tolist()))} out of range for {layer!r} with {width} channels")
    return idx


def ablated(act: torch.Tensor, channels: Sequence[int], mode: Literal["zero", "mean"] = "zero",
            means: torch.Tensor | None = None, *, layer: str = "the layer") -> torch.Tensor:
    """A copy of the activation ``act`` (``[B, C, ...]``) with ``channels`` set to 0 (``mode="zero"``) or to
    ``means[channel]`` (``mode="mean"``; ``means`` ``[C]`` or ``[C, ...]`` matching ``act[0]``): what
    ``ablate_units``' hook returns, as a pure function (to ablate a cached activation without rerunning the
    layer).  ``act`` itself is not changed; an empty ``channels`` returns it as is."""
    if mode not in MODES:
        raise MechscopeError(f"unknown ablation mode {mode!r}; choose from {list(MODES)}")
    if act.dim() < 2:
        raise MechscopeError(f"{layer!r} gives shape {tuple(act.shape)}, not [batch, C, ...]; cannot ablate channels")
    idx = _channels(channels, act.shape[1], layer).to(act.device)
    if not idx.numel():
        return act
    out = act.clone()
    if mode == "zero":
        out[:, idx] = 0
        return out
    if means is None:
        raise MechscopeError("mode='mean' needs means (e.g. channel_means(model, layer, images))")
    m = means.to(device=act.device, dtype=act.dtype)
    if m.shape[0] != act.shape[1] or (m.dim() > 1 and tuple(m.shape[1:]) != tuple(act.shape[2:])):
        raise MechscopeError(f"means of shape {tuple(m.shape)} do not fit {layer!r}'s output "
                             f"{tuple(act.shape[1:])}; give [C] or [C, ...] matching it")
    m = m[idx].reshape(len(idx), *([1] * (act.dim() - 2))) if m.dim() == 1 else m[idx]
    out[:, idx] = m.unsqueeze(0).expand(act.shape[0], *m.shape)
    return out


@contextmanager
def ablate_units(model: nn.Module, layer: str, channels: Sequence[int], mode: Literal["zero", "mean"] = "zero",
                 means: torch.Tensor | None = None) -> Iterator[None]:
    """Within the ``with`` block, ``channels`` of ``layer``'s output are replaced by 0 (``mode="zero"``) or by
    ``means[channel]`` (``mode="mean"``; ``means`` is ``[C]`` or ``[C, h, w]`` matching the layer's map, e.g.
    from ``channel_means``).  The layer's output must be ``[batch, C, ...]``.  An empty ``channels`` changes
    nothing.  Raises ``MechscopeError`` for an unknown mode, missing or mis-shaped means, or a channel out of
    range (checked at the first forward pass, where the width is known)."""
    if mode not in MODES:
        raise MechscopeError(f"unknown ablation mode {mode!r}; choose from {list(MODES)}")
    if mode == "mean" and means is None:
        raise MechscopeError("mode='mean' needs means (e.g. channel_means(model, layer, images))")
    wanted = list(channels)
    path = module_path(model, layer)

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise MechscopeError(f"layer {layer!r} does not return a tensor; cannot ablate channels")
        return ablated(output, wanted, mode, means, layer=layer)

    handle = model.get_submodule(path).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def channel_means(model: nn.Module, layer: str, batches: Iterable[torch.Tensor],
                  per_position: bool = True) -> torch.Tensor:
    """Mean activation of every channel of ``layer`` over the images of ``batches`` (each ``[B, 3, H, W]``):
    ``[C, h, w]`` (a mean per position) or, with ``per_position=False``, ``[C]`` (also averaged over space).
    Raises ``MechscopeError`` when ``batches`` is empty."""
    total, count = None, 0
    for x in batches:
        act = capture(model, x, layer)[layer].detach()
        total = act.sum(0) if total is None else total + act.sum(0)
        count += act.shape[0]
    if total is None:
        raise MechscopeError("channel_means needs at least one batch of images")
    mean = total / count
    return mean if per_position or mean.dim() == 1 else mean.flatten(1).mean(1)


def random_unit_sets(width: int, size: int, draws: int, *, exclude: Sequence[int] = (),
                     seed: int = 0) -> list[list[int]]:
    """``draws`` seeded random sets of ``size`` channels out of ``range(width)`` minus ``exclude``: the control
    for ablating a chosen set of ``size`` units.  Raises ``MechscopeError`` when too few channels remain."""
    if draws == 0:
        return []
    pool = torch.tensor(sorted(set(range(width)) - set(exclude)), dtype=torch.long)
    if size < 1 or len(pool) < size:
        raise MechscopeError(f"cannot draw sets of {size} units from the {len(pool)} units left of {width}")
    gen = torch.Generator().manual_seed(seed)
    return [sorted(pool[torch.randperm(len(pool), generator=gen)[:size]].tolist()) for _ in range(draws)]


@torch.no_grad()
def ablation_drops(model: nn.Module, layer: str, unit_sets: Mapping[str, Sequence[int]], images: torch.Tensor,
                   score: Callable[[torch.Tensor], dict[str, float]], *, mode: Literal["zero", "mean"] = "zero",
                   means: torch.Tensor | None = None) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """What ablating each set of ``unit_sets`` (``{name: channels}``) of ``layer`` costs: ``score(output)`` of
    the model on ``images`` ``[B, 3, H, W]`` unablated (``baseline``) and, per set, ``baseline - ablated`` for
    every key of the score (``drops``).  Returns ``(baseline, drops)``.

    A model with ``stages`` and ``forward_until`` / ``forward_from`` (e.g. ``ShapesNet``) split at a stage
    ``layer`` runs the layers before it once and only the rest per set; any other model runs whole per set with
    ``ablate_units``' hook.

    >>> net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))
    >>> x = torch.rand(8, 3, 2, 2)
    >>> base, drops = ablation_drops(net, "1", {"none": [], "all": [0, 1, 2, 3]}, x,
    ...                              lambda out: {"mean": float(out.mean())})
    >>> drops["none"]["mean"]
    0.0
    >>> abs(base["mean"] - drops["all"]["mean"] - float(net[3].bias.detach().mean())) < 1e-6   # all off: bias only
    True
    """
    if layer in getattr(model, "stages", ()):
        cached = model.forward_until(images, layer)
        baseline = score(model.forward_from(layer, cached))

        def run(channels: Sequence[int]) -> dict[str, float]:
            return score(model.forward_from(layer, ablated(cached, channels, mode, means, layer=layer)))
    else:
        baseline = score(model(images))

        def run(channels: Sequence[int]) -> dict[str, float]:
            with ablate_units(model, layer, channels, mode, means):
                return score(model(images))
    drops = {}
    for name, channels in unit_sets.items():
        after = run(channels)
        drops[name] = {k: baseline[k] - after[k] for k in baseline}
    return baseline, drops
