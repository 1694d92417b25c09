"""Optimize images to maximize an objective (Lucid's defaults), running only the part of the model it reads.

(Over 400 lines because the one optimization loop also owns what makes a unit's picture reproducible on any
batch, slice, worker and device: per-unit seeds, the transforms' stream, placement and autocast.)

``render`` visualizes one objective; ``render_units`` optimizes one batch in which element *i* serves unit *i*
(with ``diversity`` images per unit and optional ``negative`` images), the fast path for many units;
``render_interpolation`` morphs between two units with shared low-resolution parameters (Lucid's recipe).
All three share one optimization loop (``_optimize``): Adam 0.05, Lucid's transforms, redirected ReLU for the
first 16 steps, and ``capture``'s early exit so that only the layers the objective reads are computed.
The options they share (size, steps, thresholds, transforms, optimizer, seed, progress, redirected ReLU, device)
are one ``RenderOptions``; any of its fields can also be given as a keyword, overriding ``options``.

Every unit is checked before any work: its layer exists, its channel is in range (a layer whose width the model
does not declare is measured by a shape probe on the ``meta`` device) and its position lies inside the map.  A
loss that turns NaN or infinite stops the optimization with a ``MechscopeError`` naming the step.

Example::

    >>> import mechscope
    >>> from mechscope.vision.featvis.render import RenderOptions, render, render_units
    >>> model = mechscope.load("inceptionv1", weights="random", seed=0)
    >>> quick = RenderOptions(steps=4, size=64, progress=False)
    >>> render(model, "mixed3a:10", options=quick).images[4].shape
    torch.Size([1, 3, 64, 64])
    >>> render_units(model, ["mixed3a:10", "mixed3b:5"], options=quick, seed=1).final.shape
    torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from mechscope.capture import capture, layer_shapes
from mechscope.devices import autocast, eval_mode, placement, resolve_device
from mechscope.errors import MechscopeError
from mechscope.units import Unit, VisLabel, layer_width, parse_unit, validate
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
FINITE_CHECK_EVERY = 16  # steps between checks that the loss is finite (each check is one device sync)


@dataclasses.dataclass(frozen=True)
class RenderOptions:
    """The optimization settings shared by ``render``, ``render_units`` and ``render_interpolation``.

    ``size``: image side in pixels (for the default parameterization); ``steps``: optimization steps;
    ``thresholds``: the steps at which to keep the image (default: the last); ``transforms``: default Lucid's
    ``standard_transforms()``, ``[]`` for none; ``optimizer``: ``params -> Optimizer``, default Adam with learning
    rate 0.05; ``seed`` seeds the parameter init and the transforms' random draws; ``progress`` shows a bar;
    ``redirect_relu``: Lucid's redirected ReLU gradient for the first 16 steps (``nn.ReLU`` modules);
    ``device``: where the image lives (default: the model's device); ``amp``: the forward pass in bfloat16
    autocast on CUDA (``devices.autocast``; nothing on the CPU): the image parameters, the transforms, the
    optimizer state and the objective's value stay float32.
    """

    size: int = 128
    steps: int = 512
    thresholds: Sequence[int] | None = None
    transforms: Sequence[Transform] | None = None
    optimizer: OptimizerFn | None = None
    seed: int | None = None
    progress: bool = True
    redirect_relu: bool = True
    device: str | torch.device | None = None
    amp: bool = False

    def with_overrides(self, overrides: dict[str, Any]) -> RenderOptions:
        """These options with some fields replaced; an unknown field name is refused, naming the valid ones."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise MechscopeError(f"unknown render option(s) {unknown}; valid: {valid}")
        return dataclasses.replace(self, **overrides) if overrides else self


def _resolve(options: RenderOptions | None, overrides: dict[str, Any]) -> RenderOptions:
    return (options or RenderOptions()).with_overrides(overrides)


@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode (every module's flag restored) and no gradients into the model's own parameters while the image
    is optimized."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    with eval_mode(model):
        try:
            for p, _ in flags:
                p.requires_grad_(False)
            yield
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)


def _check_thresholds(thresholds: Sequence[int] | None, steps: int) -> list[int]:
    result = sorted(set(thresholds or [steps]))
    if result[0] < 1:
        raise MechscopeError(f"thresholds are step numbers from 1 on, got {result}")
    return result


def _non_finite_error(model: nn.Module, what: str, trace: list[torch.Tensor], total: int) -> MechscopeError:
    """The error for a loss that turned NaN / inf: the first such step, the objective, and what to try."""
    values = torch.stack(trace)
    step = int((~torch.isfinite(values)).nonzero()[0, 0]) + 1
    kind = "NaN" if torch.isnan(values[step - 1]) else "infinite"
    bad = [n for n, p in model.named_parameters() if p.is_floating_point() and not torch.isfinite(p).all()]
    weights = (f"the model's weights hold NaN/inf values ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): "
               "load other weights" if bad else "check the model's weights and inputs for NaN/inf values")
    return MechscopeError(f"feature visualization of {what} stopped: the objective became {kind} at step {step} of "
                          f"{total}; {weights}, or try a lower learning rate (optimizer=...) or fewer steps")


def _optimize(model: nn.Module, objective: Objective, param: ParamFn, options: RenderOptions, what: str,
              result: RenderResult) -> tuple[RenderResult, Callable[[], torch.Tensor]]:
    """The loop shared by every render: Adam 0.05 on ``-objective`` through the transforms; ``what`` names the
    objective in a NaN/inf error."""
    thresholds = _check_thresholds(options.thresholds, options.steps)
    layers = [layer for layer in objective.layers if layer != INPUT]
    for layer in layers:
        validate(model, layer)
    trace: list[torch.Tensor] = []
    with torch.random.fork_rng(devices=[]):
        if options.seed is not None:
            torch.manual_seed(options.seed)
        params, image_fn = param()
        if options.seed is not None:  # the transforms' draws do not depend on how many values param() drew
            torch.manual_seed(derived_seed(options.seed, "transforms"))
        opt = (options.optimizer or (lambda p: torch.optim.Adam(p, lr=0.05)))(params)
        transform = compose(standard_transforms() if options.transforms is None else options.transforms)
        state = {"step": 0}
        redirect_ctx = (redirected_relu(model, lambda: state["step"] <= REDIRECT_STEPS) if options.redirect_relu
                        else contextlib.nullcontext())
        with _frozen(model), redirect_ctx:
            last = thresholds[-1]
            for step in tqdm(range(1, last + 1), desc=objective.name[:40], disable=not options.progress):
                state["step"] = step
                opt.zero_grad()
                image = image_fn()
                with autocast(image.device, options.amp):
                    acts = dict(capture(model, transform(image), layers)) if layers else {}
                if options.amp:  # the objective in float32 also under autocast
                    acts = {name: a.float() for name, a in acts.items()}
                acts[INPUT] = image  # Lucid's T("input"): the image before the transforms
                value = objective(acts)
                (-value).backward()
                opt.step()
                trace.append(value.detach())  # no per-step device sync; a finiteness check every few steps
                if (step in thresholds or step % FINITE_CHECK_EVERY == 0 or step == last) and \
                        not bool(torch.isfinite(torch.stack(trace[-FINITE_CHECK_EVERY:])).all()):
                    raise _non_finite_error(model, what, trace, last)
                if step in thresholds:
                    with torch.no_grad():
                        result.images[step] = image_fn().detach().cpu()
    result.trace = torch.stack(trace).cpu().tolist()
    return result, image_fn


def derived_seed(seed: int, name: str) -> int:
    """A 63-bit seed for the stream ``name`` (e.g. a unit's label) of ``seed``: the same on every machine and in
    every process (no ``hash()`` salting), and unrelated for different names.

    >>> derived_seed(0, "mixed3a:10") == derived_seed(0, "mixed3a:10") != derived_seed(0, "mixed3a:11")
    True
    """
    digest = hashlib.sha256(f"{seed}\x00{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _per_item(make: Callable[[int], tuple[list[torch.Tensor], Callable[[], torch.Tensor]]], labels: Sequence[str],
              seed: int | None) -> ParamFn:
    """``make(len(labels))`` whose element ``i`` starts from the values ``make(1)`` draws under the seed
    ``derived_seed(seed, labels[i])``: a unit's start does not depend on the batch it is optimized in.

    Only where every parameter is ``[batch, ...]`` (as ``param.image``'s are); a parameterization that shares
    parameters across the batch keeps its own batch-wide draw.
    """
    def param() -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
        params, image_fn = make(len(labels))
        if seed is None:
            return params, image_fn
        with torch.no_grad():
            for i, label in enumerate(labels):
                torch.manual_seed(derived_seed(seed, label))
                mine, _ = make(1)
                if len(mine) != len(params) or any(p.shape[0] != len(labels) or q.shape != (1, *p.shape[1:])
                                                   for p, q in zip(params, mine)):
                    return params, image_fn   # shared parameters: no per-item start
                for p, q in zip(params, mine):
                    p[i].copy_(q[0])
        return params, image_fn

    return param


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    return resolve_device(device) if device is not None else placement(model)["device"]


def render(
    model: nn.Module,
    objective: str | Objective,
    param: ParamFn | None = None,
    *,
    options: RenderOptions | None = None,
    **overrides: Any,
) -> RenderResult:
    """Feature visualization of ``objective`` on ``model``.

    Args:
        model: any ``nn.Module`` taking ``[batch, 3, H, W]`` images in [0, 1].
        objective: an ``Objective`` or a unit name such as ``"mixed3b:379"``.
        param: ``() -> (params, image_fn)``; default ``param.image(options.size)`` (FFT + decorrelated colour).
        options: ``RenderOptions``; ``overrides`` replace some of its fields (``steps=8``).
    Returns:
        ``RenderResult`` with ``images[step]`` of shape ``[batch, 3, H, W]`` and the objective's trace.
    """
    options = _resolve(options, overrides)
    device = _model_device(model, options.device)
    if isinstance(objective, str) and isinstance(validate(model, objective), Unit):
        _check_units(model, [objective], options.size)  # the channel's range too, before any work
    objective = as_objective(objective)
    param = param or (lambda: param_mod.image(options.size, device=device))
    result, _ = _optimize(model, objective, param, options, objective.name or "the objective", RenderResult(images={}))
    return result


def units_objective(
    units: Sequence[str], diversity: int = 1, negative: bool = False, diversity_weight: float = 1e2
) -> tuple[Objective, list[str]]:
    """The batch objective of ``render_units`` and the label of each batch element (``str`` of a ``VisLabel``).

    Unit ``u`` owns ``diversity`` consecutive elements (``diversity`` more, negated, with ``negative``); each
    element maximizes (or minimizes) its own unit; a group of ``diversity > 1`` also pays
    ``diversity_weight * diversity(layer)`` on its own elements.
    """
    parts, labels = [], []
    for u in map(parse_unit, units):
        for neg in (False, True) if negative else (False,):
            start = len(labels)
            for k in range(diversity):
                labels.append(str(VisLabel(u, neg, k if diversity > 1 else None)))
                parts.append((-1 if neg else 1) * unit_objective(u, batch=start + k))
            if diversity > 1:
                parts.append(-diversity_weight * diversity_objective(u.layer, batch=slice(start, start + diversity)))
    return Objective.sum(parts), labels


def _what(units: Sequence[str]) -> str:
    """Units named in an error message: the first few and how many more."""
    shown = ", ".join(units[:4]) + (f" and {len(units) - 4} more" if len(units) > 4 else "")
    return f"unit{'s' if len(units) > 1 else ''} {shown}"


def render_units(
    model: nn.Module,
    units: Sequence[str],
    *,
    diversity: int = 1,
    negative: bool = False,
    diversity_weight: float = 1e2,
    param: Callable[[int], tuple[list[torch.Tensor], Callable[[], torch.Tensor]]] | None = None,
    options: RenderOptions | None = None,
    **overrides: Any,
) -> UnitsResult:
    """Visualize many units in one optimized batch: element ``i`` serves unit ``i``.

    Each element's gradient depends only on its own image and unit (the diversity penalty, when asked for, couples
    only the images of one unit), so the batch optimizes every unit as a separate render would, at a fraction of
    the cost: one forward/backward for all, stopped at the deepest layer needed.

    With a ``seed``, a unit's image does not depend on the batch it is rendered in: element ``i`` starts from
    parameters drawn under ``derived_seed(seed, labels[i])`` (its unit, sign and diversity index), and the random
    transforms, applied alike to the whole batch, come from a stream of ``seed`` alone.  Rendering units together,
    in slices or one by one thus gives the same images up to float rounding (a convolution's kernel can differ
    in the last bits between batch sizes): the same 8-bit PNGs but for rare pixels at a rounding boundary.

    Args:
        units: names such as ``["mixed3b:379", "mixed4a:476@7,7"]``; all are validated before any work.
        diversity: images per unit, pushed apart by Lucid's diversity penalty (weight ``diversity_weight``).
        negative: also render images that *minimize* each unit.
        param: ``batch -> (params, image_fn)``; default ``param.image(options.size, batch=batch)``.
        options: ``RenderOptions``; ``overrides`` replace some of its fields (``steps=8``).
    Returns:
        ``UnitsResult``: ``images[step]`` ``[len(units) * diversity * (2 if negative else 1), 3, size, size]``,
        ``labels``, final ``activations`` and the summed objective's trace.
    """
    options = _resolve(options, overrides)
    if not units:
        raise MechscopeError("render_units needs at least one unit")
    if diversity < 1:
        raise MechscopeError(f"diversity is the number of images per unit, at least 1 (got {diversity})")
    names = [str(u) for u in _check_units(model, units, options.size)]
    device = _model_device(model, options.device)
    objective, labels = units_objective(names, diversity, negative, diversity_weight)
    make = param or (lambda batch: param_mod.image(options.size, batch=batch, device=device))
    result = UnitsResult(images={}, units=names, labels=labels,
                         settings={"size": options.size, "steps": options.steps, "diversity": diversity,
                                   "negative": negative, "diversity_weight": diversity_weight, "seed": options.seed,
                                   "redirect_relu": options.redirect_relu,
                                   "optimizer": "Adam(lr=0.05)" if options.optimizer is None
                                   else repr(options.optimizer)})
    result, image_fn = _optimize(model, objective, _per_item(make, labels, options.seed), options, _what(names),
                                 result)
    result.activations = _final_activations(model, labels, image_fn)
    return result


def render_interpolation(
    model: nn.Module,
    unit_a: str,
    unit_b: str,
    frames: int = 8,
    *,
    alignment_weight: float = 1e-1,
    options: RenderOptions | None = None,
    **overrides: Any,
) -> UnitsResult:
    """Interpolate between two channel units over ``frames`` images (Lucid's recipe).

    Frame ``i`` maximizes ``channel_interpolate`` with weight ``i / (frames - 1)`` on ``unit_b``; the frames share
    low-resolution parameters (``param.shared_image``) and, with ``alignment_weight > 0``, Lucid's alignment term
    at ``unit_a``'s layer keeps neighbouring frames alike.  ``options``: ``RenderOptions`` (``overrides`` replace
    some of its fields).

    Returns:
        ``UnitsResult`` with ``images[step]`` ``[frames, 3, size, size]``; ``labels`` ``"a->b@t"``; ``activations``
        the interpolated objective of each frame on its final image.
    """
    options = _resolve(options, overrides)
    a, b = (parse_unit(u) for u in (unit_a, unit_b))
    if a.position is not None or b.position is not None:
        raise MechscopeError("interpolation is between channels: give units without a position")
    _check_units(model, [a, b], options.size)
    if frames < 2:
        raise MechscopeError(f"an interpolation needs at least 2 frames (got {frames})")
    device = _model_device(model, options.device)
    objective = channel_interpolate(a.layer, a.channel, b.layer, b.channel)
    if alignment_weight:
        objective = objective + alignment_weight * alignment(a.layer)
    weights = [i / (frames - 1) for i in range(frames)]
    result = UnitsResult(images={}, units=[str(a), str(b)], labels=[f"{a}->{b}@{w:.2f}" for w in weights],
                         settings={"size": options.size, "steps": options.steps, "frames": frames,
                                   "seed": options.seed, "alignment_weight": alignment_weight,
                                   "redirect_relu": options.redirect_relu})
    result, image_fn = _optimize(model, objective, lambda: param_mod.shared_image(options.size, frames, device=device),
                                 options, f"the interpolation {a} -> {b}", result)
    with torch.no_grad():
        acts = capture(model, image_fn(), sorted({a.layer, b.layer}))
        result.activations = [
            float((1 - w) * acts[a.layer][i, a.channel].mean() + w * acts[b.layer][i, b.channel].mean())
            for i, w in enumerate(weights)
        ]
    return result


def _check_units(model: nn.Module, units: Sequence[str | Unit], size: int) -> list[Unit]:
    """Every unit exists, its channel is in range and its position lies inside its map at ``size`` px.

    Widths the model does not declare, and the maps of units with a position, come from one shape probe on the
    ``meta`` device (no arithmetic, no memory) of a ``[1, 3, size, size]`` input; where a model cannot run there,
    undeclared widths are left to the render itself.
    """
    parsed = [validate(model, parse_unit(u)) for u in units]  # layers exist; declared widths checked
    unknown = {u.layer for u in parsed if layer_width(model, u.layer) is None}
    probe = sorted(unknown | {u.layer for u in parsed if u.position is not None})
    try:
        shapes = layer_shapes(model, (3, size, size), probe) if probe else {}
    except (RuntimeError, NotImplementedError, TypeError):
        if any(u.position is not None for u in parsed):
            raise
        return parsed  # a model that cannot run on ``meta`` (.item(), numpy): its undeclared widths go unchecked
    for u in parsed:
        if u.layer in unknown:
            if not shapes[u.layer]:
                raise MechscopeError(f"layer {u.layer!r} outputs a scalar per image; it has no channels to visualize")
            validate(model, u, width=shapes[u.layer][0])
        if u.position is not None:
            h, w = shapes[u.layer][-2:]
            if not (u.position[0] < h and u.position[1] < w):
                raise MechscopeError(
                    f"unit {u}: position {u.position} is outside layer {u.layer!r}'s {h}x{w} map at {size} px; "
                    f"use a larger --size or a position inside the map"
                )
    return parsed


def _final_activations(model: nn.Module, labels: list[str], image_fn: Callable[[], torch.Tensor]) -> list[float]:
    """Each element's unit activation on its final image, without transforms."""
    with torch.no_grad():
        image = image_fn()[:, :3]
        objectives = [unit_objective(VisLabel.parse(label).unit, batch=i) for i, label in enumerate(labels)]
        acts = capture(model, image, sorted({o.layers[0] for o in objectives}))
        return [float(o(acts)) for o in objectives]


__all__ = ["render", "render_units", "render_interpolation", "units_objective", "derived_seed", "RenderOptions", "RenderResult",
           "UnitsResult", "file_stem"]
