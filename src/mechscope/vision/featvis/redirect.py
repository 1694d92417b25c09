"""Redirected ReLU, as Lucid does it: early in optimization, let gradients pass dead ReLUs when nothing else would.

At the start of a render, a unit is often not firing for an image: every ReLU on the way is negative, the true
gradient is zero and the optimizer never moves.  Lucid's fix, applied for the first 16 steps: per batch element,
when the ReLU's true gradient is all zero, use instead the incoming gradient wherever it would push a negative
input *up* (and zero where it would push it further down).  Once any gradient flows, the true gradient is used.

``redirected_relu(model, active)`` swaps the forward of every ``nn.ReLU`` module of ``model`` (a zoo model or a
user's model built from ``nn.ReLU`` modules; functional ``F.relu`` calls cannot be reached) while the block
runs; forward hooks keep firing and the modules are restored on exit, also on error.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from mechscope.vision.featvis.redirect import redirected_relu
    >>> model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    >>> with redirected_relu(model, active=lambda: True):
    ...     y = model(torch.randn(1, 2))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

REDIRECT_STEPS = 16


class RedirectedReLUFunction(torch.autograd.Function):
    """ReLU forward; Lucid's redirected gradient backward (see the module docstring).

    The loss is minimized (``loss = -objective``), so a positive incoming gradient at a negative input would push
    that input further down: those entries are zeroed, the others pass.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        negative = x < 0
        relu_grad = grad.masked_fill(negative, 0)
        alive = relu_grad.flatten(1).ne(0).any(1)  # per batch element: does the true gradient flow?
        if bool(alive.all()):  # the common case once optimization is under way
            return relu_grad
        redirected = grad.masked_fill(negative & (grad > 0), 0)
        return torch.where(alive.view(-1, *([1] * (grad.dim() - 1))), relu_grad, redirected)


def redirected_relu_fn(x: torch.Tensor) -> torch.Tensor:
    """``relu(x)`` whose backward pass is Lucid's redirected gradient."""
    return RedirectedReLUFunction.apply(x)


@contextlib.contextmanager
def redirected_relu(model: nn.Module, active: Callable[[], bool]) -> Iterator[int]:
    """Within the block, every ``nn.ReLU`` of ``model`` uses the redirected gradient whenever ``active()``.

    Yields the number of ReLU modules redirected.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]

    def make_forward(module: nn.ReLU) -> Callable[[torch.Tensor], torch.Tensor]:
        plain = type(module).forward

        def forward(x: torch.Tensor) -> torch.Tensor:
            return redirected_relu_fn(x) if active() and torch.is_grad_enabled() else plain(module, x)

        return forward

    try:
        for m in relus:
            m.forward = make_forward(m)  # an instance attribute shadows the class's forward
        yield len(relus)
    finally:
        for m in relus:
            m.__dict__.pop("forward", None)
