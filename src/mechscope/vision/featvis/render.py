"""Optimize images to maximize an objective (Lucid's defaults), running only the part of the model it reads.

``render`` visualizes one objective; ``render_units`` optimizes one batch in which element *i* serves unit *i*
(with ``diversity`` images per unit and optional ``negative`` images), the fast path for many units;
``render_interpolation`` morphs between two units with shared low-resolution parameters (Lucid's recipe).
All three share one optimization loop (``_optimize``): Adam 0.05, Lucid's transforms, redirected ReLU for the
first 16 steps, and ``capture``'s early exit so that only the layers the objective reads are computed.

Example::

    >>> import mechscope
    >>> from mechscope.vision.featvis.render import render, render_units
    >>> model = mechscope.load("inceptionv1", weights="random", seed=0)
    >>> render(model, "mixed3a:10", steps=4, size=64, progress=False).images[4].shape
    torch.Size([1, 3, 64, 64])
    >>> render_units(model, ["mixed3a:10", "mixed3b:5"], steps=4, size=64, progress=False).final.shape
    torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from mechscope.capture import capture, layer_shapes
from mechscope.devices import resolve_device
from mechscope.errors import MechscopeError
from mechscope.units import parse_unit, validate
from mechscope.vision.featvis import param as param_mod
from mechscope.vision.featvis.objectives import (
    INPUT,
    Objective,
    alignment,
    as_objective,
    channel_interpolate,
    diversity as diversity_objective,
    unit_objective,
)
from mechscope.vision.featvis.redirect import REDIRECT_STEPS, redirected_relu
from mechscope.vision.featvis.results import RenderResult, UnitsResult, file_stem
from mechscope.vision.featvis.transform import Transform, compose, standard_transforms

ParamFn = Callable[[], tuple[list[torch.Tensor], Callable[[], torch.Tensor]]]
OptimizerFn = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


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


def _check_thresholds(thresholds: Sequence[int] | None, steps: int) -> list[int]:
    result = sorted(set(thresholds or [steps]))
    if result[0] < 1:
        raise MechscopeError(f"thresholds are step numbers from 1 on, got {result}")
    return result


def _optimize(
    model: nn.Module,
    objective: Objective,
    param: ParamFn,
    transforms: Sequence[Transform] | None,
    optimizer: OptimizerFn | None,
    thresholds: list[int],
    seed: int | None,
    progress: bool,
    redirect: bool,
    result: RenderResult,
) -> tuple[RenderResult, Callable[[], torch.Tensor]]:
    """The loop shared by every render: Adam 0.05 on ``-objective`` through the transforms."""
    layers = [layer for layer in objective.layers if layer != INPUT]
    for layer in layers:
        validate(model, layer)
    trace: list[torch.Tensor] = []
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        params, image_fn = param()
        opt = (optimizer or (lambda p: torch.optim.Adam(p, lr=0.05)))(params)
        transform = compose(standard_transforms() if transforms is None else transforms)
        state = {"step": 0}
        redirect_ctx = redirected_relu(model, lambda: state["step"] <= REDIRECT_STEPS) if redirect else contextlib.nullcontext()
        with _frozen(model), redirect_ctx:
            for step in tqdm(range(1, thresholds[-1] + 1), desc=objective.name[:40], disable=not progress):
                state["step"] = step
                opt.zero_grad()
                image = image_fn()
                acts = dict(capture(model, transform(image), layers)) if layers else {}
                acts[INPUT] = image  # Lucid's T("input"): the image before the transforms
                value = objective(acts)
                (-value).backward()
                opt.step()
                trace.append(value.detach())  # no per-step device sync; floats at the end
                if step in thresholds:
                    with torch.no_grad():
                        result.images[step] = image_fn().detach().cpu()
    result.trace = torch.stack(trace).cpu().tolist()
    return result, image_fn


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return resolve_device(device)
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def render(
    model: nn.Module,
    objective: str | Objective,
    param: ParamFn | None = None,
    transforms: Sequence[Transform] | None = None,
    optimizer: OptimizerFn | None = None,
    steps: int = 512,
    thresholds: Sequence[int] | None = None,
    *,
    size: int = 128,
    seed: int | None = None,
    progress: bool = True,
    redirect_relu: bool = True,
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
        redirect_relu: Lucid's redirected ReLU gradient for the first 16 steps (``nn.ReLU`` modules).
    Returns:
        ``RenderResult`` with ``images[step]`` of shape ``[batch, 3, H, W]`` and the objective's trace.
    """
    device = _model_device(model, device)
    if isinstance(objective, str):
        validate(model, objective)  # the channel's range too, before any work
    objective = as_objective(objective)
    param = param or (lambda: param_mod.image(size, device=device))
    result, _ = _optimize(model, objective, param, transforms, optimizer, _check_thresholds(thresholds, steps),
                          seed, progress, redirect_relu, RenderResult(images={}))
    return result


def units_objective(
    units: Sequence[str], diversity: int = 1, negative: bool = False, diversity_weight: float = 1e2
) -> tuple[Objective, list[str]]:
    """The batch objective of ``render_units`` and the label of each batch element.

    Unit ``u`` owns ``diversity`` consecutive elements (``diversity`` more, negated, with ``negative``); each
    element maximizes (or minimizes) its own unit; a group of ``diversity > 1`` also pays
    ``diversity_weight * diversity(layer)`` on its own elements.
    """
    parts, labels = [], []
    signs = (1, -1) if negative else (1,)
    for u in units:
        layer = parse_unit(u).layer
        for sign in signs:
            start = len(labels)
            for k in range(diversity):
                suffix = ("#neg" if sign < 0 else "") + (f"#{k}" if diversity > 1 else "")
                labels.append(f"{u}{suffix}".replace("#neg#", "#neg_"))
                parts.append(sign * unit_objective(u, batch=start + k))
            if diversity > 1:
                parts.append(-diversity_weight * diversity_objective(layer, batch=slice(start, start + diversity)))
    return Objective.sum(parts), labels


def render_units(
    model: nn.Module,
    units: Sequence[str],
    *,
    size: int = 128,
    steps: int = 512,
    thresholds: Sequence[int] | None = None,
    diversity: int = 1,
    negative: bool = False,
    diversity_weight: float = 1e2,
    param: Callable[[int], tuple[list[torch.Tensor], Callable[[], torch.Tensor]]] | None = None,
    transforms: Sequence[Transform] | None = None,
    optimizer: OptimizerFn | None = None,
    seed: int | None = None,
    progress: bool = True,
    redirect_relu: bool = True,
    device: str | torch.device | None = None,
) -> UnitsResult:
    """Visualize many units in one optimized batch: element ``i`` serves unit ``i``.

    Each element's gradient depends only on its own image and unit (the diversity penalty, when asked for, couples
    only the images of one unit), so the batch optimizes every unit as a separate render would, at a fraction of
    the cost: one forward/backward for all, stopped at the deepest layer needed.

    Args:
        units: names such as ``["mixed3b:379", "mixed4a:476@7,7"]``; all are validated before any work.
        diversity: images per unit, pushed apart by Lucid's diversity penalty (weight ``diversity_weight``).
        negative: also render images that *minimize* each unit.
        param: ``batch -> (params, image_fn)``; default ``param.image(size, batch=batch)``.
    Returns:
        ``UnitsResult``: ``images[step]`` ``[len(units) * diversity * (2 if negative else 1), 3, size, size]``,
        ``labels``, final ``activations`` and the summed objective's trace.
    """
    if not units:
        raise MechscopeError("render_units needs at least one unit")
    if diversity < 1:
        raise MechscopeError(f"diversity is the number of images per unit, at least 1 (got {diversity})")
    _check_units(model, units, size)
    device = _model_device(model, device)
    objective, labels = units_objective(units, diversity, negative, diversity_weight)
    make = param or (lambda batch: param_mod.image(size, batch=batch, device=device))
    result = UnitsResult(images={}, units=list(units), labels=labels,
                         settings={"size": size, "steps": steps, "diversity": diversity, "negative": negative,
                                   "diversity_weight": diversity_weight, "seed": seed, "redirect_relu": redirect_relu,
                                   "optimizer": "Adam(lr=0.05)" if optimizer is None else repr(optimizer)})
    result, image_fn = _optimize(model, objective, lambda: make(len(labels)), transforms, optimizer,
                                 _check_thresholds(thresholds, steps), seed, progress, redirect_relu, result)
    result.activations = _final_activations(model, labels, image_fn)
    return result


def render_interpolation(
    model: nn.Module,
    unit_a: str,
    unit_b: str,
    frames: int = 8,
    *,
    size: int = 128,
    steps: int = 512,
    thresholds: Sequence[int] | None = None,
    alignment_weight: float = 1e-1,
    transforms: Sequence[Transform] | None = None,
    optimizer: OptimizerFn | None = None,
    seed: int | None = None,
    progress: bool = True,
    redirect_relu: bool = True,
    device: str | torch.device | None = None,
) -> UnitsResult:
    """Interpolate between two channel units over ``frames`` images (Lucid's recipe).

    Frame ``i`` maximizes ``channel_interpolate`` with weight ``i / (frames - 1)`` on ``unit_b``; the frames share
    low-resolution parameters (``param.shared_image``) and, with ``alignment_weight > 0``, Lucid's alignment term
    at ``unit_a``'s layer keeps neighbouring frames alike.

    Returns:
        ``UnitsResult`` with ``images[step]`` ``[frames, 3, size, size]``; ``labels`` ``"a->b@t"``; ``activations``
        the interpolated objective of each frame on its final image.
    """
    a, b = (validate(model, parse_unit(u)) for u in (unit_a, unit_b))
    if a.position is not None or b.position is not None:
        raise MechscopeError("interpolation is between channels: give units without a position")
    if frames < 2:
        raise MechscopeError(f"an interpolation needs at least 2 frames (got {frames})")
    device = _model_device(model, device)
    objective = channel_interpolate(a.layer, a.channel, b.layer, b.channel)
    if alignment_weight:
        objective = objective + alignment_weight * alignment(a.layer)
    weights = [i / (frames - 1) for i in range(frames)]
    result = UnitsResult(images={}, units=[str(a), str(b)], labels=[f"{a}->{b}@{w:.2f}" for w in weights],
                         settings={"size": size, "steps": steps, "frames": frames, "seed": seed,
                                   "alignment_weight": alignment_weight, "redirect_relu": redirect_relu})
    result, image_fn = _optimize(model, objective, lambda: param_mod.shared_image(size, frames, device=device),
                                 transforms, optimizer, _check_thresholds(thresholds, steps), seed, progress,
                                 redirect_relu, result)
    with torch.no_grad():
        acts = capture(model, image_fn(), sorted({a.layer, b.layer}))
        result.activations = [
            float((1 - w) * acts[a.layer][i, a.channel].mean() + w * acts[b.layer][i, b.channel].mean())
            for i, w in enumerate(weights)
        ]
    return result


def _check_units(model: nn.Module, units: Sequence[str], size: int) -> None:
    """Every unit exists, its channel is in range and its position lies inside its map at ``size`` px."""
    parsed = [validate(model, parse_unit(u)) for u in units]
    placed = [u for u in parsed if u.position is not None]
    if not placed:
        return
    shapes = layer_shapes(model, (3, size, size), sorted({u.layer for u in placed}))
    for u in placed:
        h, w = shapes[u.layer][-2:]
        if not (u.position[0] < h and u.position[1] < w):
            raise MechscopeError(
                f"unit {u}: position {u.position} is outside layer {u.layer!r}'s {h}x{w} map at {size} px; "
                f"use a larger --size or a position inside the map"
            )


def _final_activations(model: nn.Module, labels: list[str], image_fn: Callable[[], torch.Tensor]) -> list[float]:
    """Each element's unit activation on its final image, without transforms."""
    with torch.no_grad():
        image = image_fn()[:, :3]
        unit_names = [label.split("#")[0] for label in labels]
        objectives = [unit_objective(u, batch=i) for i, u in enumerate(unit_names)]
        acts = capture(model, image, sorted({o.layers[0] for o in objectives}))
        return [float(o(acts)) for o in objectives]


__all__ = ["render", "render_units", "render_interpolation", "units_objective", "RenderResult", "UnitsResult",
           "file_stem"]
