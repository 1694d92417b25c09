"""Optimize an image to maximize an objective (Adam 0.05, Lucid's transforms), running only what it reads.

Example::

    >>> import mechscope
    >>> from mechscope.vision.featvis.render import render
    >>> model = mechscope.load("inceptionv1", weights="random", seed=0)
    >>> result = render(model, "mixed3a:10", steps=4, size=64, progress=False)
    >>> result.images[4].shape
    torch.Size([1, 3, 64, 64])
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from mechscope.capture import capture
from mechscope.devices import resolve_device
from mechscope.errors import MechscopeError
from mechscope.images import png_bytes, save_png
from mechscope.units import validate
from mechscope.vision.featvis import param as param_mod
from mechscope.vision.featvis.objectives import Objective, as_objective
from mechscope.vision.featvis.transform import Transform, compose, standard_transforms

ParamFn = Callable[[], tuple[list[torch.Tensor], Callable[[], torch.Tensor]]]


@dataclass
class RenderResult:
    """Images at each threshold step (``{step: [batch, 3, H, W]}``) and the objective's value at every step."""

    images: dict[int, torch.Tensor]
    trace: list[float] = field(default_factory=list)

    @property
    def final(self) -> torch.Tensor:
        """The image at the last threshold."""
        return self.images[max(self.images)]

    def save(self, path: str | os.PathLike) -> Path:
        """Save the final image (a grid for a batch) as PNG."""
        return save_png(self.final, path)

    def _repr_png_(self) -> bytes:
        return png_bytes(self.final)


@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients into the model's own parameters while the image is optimized; both restored."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    training = model.training
    model.eval()
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(training)


def render(
    model: nn.Module,
    objective: str | Objective,
    param: ParamFn | None = None,
    transforms: Sequence[Transform] | None = None,
    optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None = None,
    steps: int = 512,
    thresholds: Sequence[int] | None = None,
    *,
    size: int = 128,
    seed: int | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> RenderResult:
    """Feature visualization of ``objective`` on ``model``.

    Args:
        model: any ``nn.Module`` taking ``[batch, 3, H, W]`` images in [0, 1].
        objective: an ``Objective`` or a unit name such as ``"mixed3b:379"``.
        param: ``() -> (params, image_fn)``; default ``param.image(size)`` (FFT + decorrelated colour).
        transforms: default Lucid's ``standard_transforms()``; ``[]`` for none.
        optimizer: ``params -> Optimizer``; default Adam with learning rate 0.05.
        steps: optimization steps; ``thresholds``: the steps at which to keep the image (default: the last).
        seed: seeds the parameter init and the transforms' random draws.
    Returns:
        ``RenderResult`` with ``images[step]`` of shape ``[batch, 3, H, W]`` and the objective's trace.
    """
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    if isinstance(objective, str):
        validate(model, objective)  # the channel's range too, before any work
    objective = as_objective(objective)
    for layer in objective.layers:
        validate(model, layer)
    thresholds = sorted(set(thresholds or [steps]))
    if thresholds[0] < 1:
        raise MechscopeError(f"thresholds are step numbers from 1 on, got {thresholds}")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        params, image_fn = (param or (lambda: param_mod.image(size, device=device)))()
        opt = (optimizer or (lambda p: torch.optim.Adam(p, lr=0.05)))(params)
        transform = compose(standard_transforms() if transforms is None else transforms)
        result = RenderResult(images={})
        with _frozen(model):
            for step in tqdm(range(1, max(thresholds) + 1), desc=objective.name, disable=not progress):
                opt.zero_grad()
                acts = capture(model, transform(image_fn()), objective.layers)
                value = objective(acts)
                (-value).backward()
                opt.step()
                result.trace.append(float(value.detach()))
                if step in thresholds:
                    with torch.no_grad():
                        result.images[step] = image_fn().detach().cpu()
    return result
