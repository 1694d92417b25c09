"""Read activations by layer name from any ``nn.Module``.

``capture`` registers forward hooks on the modules behind the requested layers, runs the model, and stops the
forward pass as soon as the last requested layer has been computed: asking for ``conv2d2`` does not pay for
``mixed5b``.  Gradients flow through the returned tensors (feature visualization backpropagates through them),
and the hooks are removed whatever happens.

Example::

    >>> import torch, mechscope
    >>> model = mechscope.load("inceptionv1", weights="random").eval()
    >>> acts = mechscope.capture(model, torch.rand(1, 3, 224, 224), ["conv2d2", "mixed3b:379"])
    >>> acts["conv2d2"].shape, acts["mixed3b:379"].shape
    (torch.Size([1, 192, 56, 56]), torch.Size([1, 480, 28, 28]))

A unit name such as ``mixed3b:379`` captures its whole layer (objectives pick the channel).  A module that runs
more than once in one forward pass (a shared ``nn.ReLU`` reused in a block) is read at its first call.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.units import layer_table, module_path, parse


class _StopForward(Exception):
    """Raised inside a hook once every requested layer is captured; never escapes ``capture``."""


def _as_list(layers: str | Iterable[str]) -> list[str]:
    """One name or many, without repeats, in the order given."""
    return list(dict.fromkeys([layers] if isinstance(layers, str) else layers))


@contextmanager
def _hooked(model: nn.Module, names: list[str], early_exit: bool):
    """Yield the dict that fills as the model runs; the hooks are removed on leaving, also on error."""
    by_path: dict[str, list[str]] = {}
    for name in names:
        by_path.setdefault(module_path(model, parse(name).layer), []).append(name)
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(path: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if by_path[path][0] in store:  # a module called again: keep its first output
                return
            if not isinstance(output, torch.Tensor):
                raise MechscopeError(f"module {path!r} returned {type(output).__name__}, not a tensor")
            for name in by_path[path]:
                store[name] = output
            if early_exit and len(store) == len(names):
                raise _StopForward

        return hook

    try:
        for path in by_path:
            handles.append(model.get_submodule(path).register_forward_hook(make_hook(path)))
        yield store
    finally:
        for h in handles:
            h.remove()


def capture(
    model: nn.Module,
    x: torch.Tensor,
    layers: str | Iterable[str],
    *,
    early_exit: bool = True,
) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``x`` and return the outputs of ``layers``, keyed by the names asked for.

    Args:
        model: any ``nn.Module``; layers are named by the model's ``layer_table`` or by module path.
        x: the model's input, e.g. ``[batch, 3, H, W]`` images in ``[0, 1]`` for the zoo's vision models.
        layers: one name or several (``"mixed3b"``, ``"mixed3b_pre_relu"``, ``"mixed3b:379"``, ``"layer1.0.conv1"``).
        early_exit: stop the forward pass once the last requested layer has run (default).  With ``False`` the
            whole model runs; the captured tensors are identical.

    Returns:
        ``{name: tensor}``; each tensor is the module's output as the model produced it (not detached).
    """
    names = _as_list(layers)
    if not names:
        raise MechscopeError("capture needs at least one layer name")
    with _hooked(model, names, early_exit) as store:
        try:
            model(x)
        except _StopForward:
            pass
    missing = [n for n in names if n not in store]
    if missing:
        raise MechscopeError(
            f"layers {missing} did not run in the forward pass of {type(model).__name__}; "
            "name modules that the model's forward calls"
        )
    return {n: store[n] for n in names}


def layer_shapes(model: nn.Module, input_shape: tuple[int, ...], layers: Iterable[str] | None = None) -> dict[str, tuple[int, ...]]:
    """Output shape of each layer (without the batch dimension) for an input of ``input_shape``.

    Computed on PyTorch's ``meta`` device: no arithmetic is done and no memory is used, whatever the model.
    ``layers`` defaults to the model's declared layers (every module path for a model that declares none).
    """
    import copy

    names = list(layers) if layers is not None else (list(layer_table(model)) or [p for p, _ in model.named_modules() if p])
    shadow = copy.deepcopy(model).to("meta")
    with torch.no_grad():
        acts = capture(shadow, torch.empty(1, *input_shape, device="meta"), names, early_exit=False)
    return {n: tuple(acts[n].shape[1:]) for n in names}


def as_map(act: torch.Tensor, layer: str, purpose: str) -> torch.Tensor:
    """A layer's output as a ``[batch, C, x, y]`` map: ``[batch, C]`` becomes ``[batch, C, 1, 1]``.

    Other shapes raise ``MechscopeError`` saying what ``purpose`` (e.g. "dataset examples") needs.
    """
    if act.dim() == 2:
        return act[:, :, None, None]
    if act.dim() != 4:
        raise MechscopeError(f"layer {layer!r} outputs shape {tuple(act.shape)}; {purpose} need "
                             "[batch, channel, x, y] or [batch, channel] outputs")
    return act
