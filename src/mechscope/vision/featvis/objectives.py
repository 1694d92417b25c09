"""Objectives: small closures over activations, with an algebra (``+``, ``-``, scalar ``*``, negation, ``sum``).

An ``Objective`` knows which layers it reads (so ``render`` runs only that part of the network) and maps
``{layer: activation}`` to a scalar to *maximize*, as in Lucid.  Penalties keep Lucid's signs: ``L1``, ``L2``,
``total_variation``, ``blur_input_each_step`` and ``diversity`` return a positive amount to subtract
(``channel(...) - 1e2 * diversity(layer)``); ``alignment`` returns a negative amount to add.

The pseudo-layer ``"input"`` is the image being optimized (before the transforms), as Lucid's ``T("input")``.
Activations are ``[batch, channels, x, y]``; ``batch`` arguments tie an objective to one batch index (or a
slice / list of indices).  ``"layer:n"`` is shorthand for ``channel("layer", n)`` and ``"layer:n@x,y"`` for
``neuron("layer", n, x, y)``; parsing goes through ``mechscope.units``.

Example::

    >>> import torch
    >>> from mechscope.vision.featvis import objectives as obj
    >>> o = obj.channel("mixed3b", 379) - 1e2 * obj.diversity("mixed3b")
    >>> o.layers
    ('mixed3b',)
    >>> float(obj.channel("a", 1)({"a": torch.ones(2, 3, 4, 4)}))
    1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from mechscope.errors import MechscopeError
from mechscope.units import Layer, Unit, parse

Activations = Mapping[str, torch.Tensor]
BatchIndex = int | slice | Sequence[int] | None
INPUT = "input"


class Objective:
    """A scalar to maximize, computed from the activations of ``layers``."""

    def __init__(self, fn: Callable[[Activations], torch.Tensor], layers: Iterable[str], name: str = "") -> None:
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.name = name

    def __call__(self, acts: Activations) -> torch.Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, (int, float)):
            return Objective(lambda a: self(a) + other, self.layers, f"{self.name} + {other}")
        return Objective(lambda a: self(a) + other(a), self.layers + other.layers, f"{self.name} + {other.name}")

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective(lambda a: -self(a), self.layers, f"-{self.name}")

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __rsub__(self, other: float) -> Objective:
        return (-self) + other

    def __mul__(self, other: float) -> Objective:
        if not isinstance(other, (int, float)):
            raise MechscopeError("objectives multiply by numbers only; add objectives with +")
        return Objective(lambda a: other * self(a), self.layers, f"{other} * {self.name}")

    __rmul__ = __mul__

    @staticmethod
    def sum(objectives: Iterable[Objective]) -> Objective:
        """The sum of several objectives (``sum()`` of Python works too)."""
        objectives = list(objectives)
        layers = [layer for o in objectives for layer in o.layers]
        return Objective(lambda a: sum(o(a) for o in objectives), layers, " + ".join(o.name for o in objectives))


def _select(t: torch.Tensor, batch: BatchIndex) -> torch.Tensor:
    """The batch elements an objective is tied to (all when ``batch`` is None), keeping the batch dim."""
    if batch is None:
        return t
    if isinstance(batch, int):
        return t[batch : batch + 1]
    if isinstance(batch, slice):
        return t[batch]
    return t[list(batch)]


def _centre(t: torch.Tensor, x: int | None, y: int | None, layer: str = "") -> tuple[int, int]:
    """The position ``(x, y)`` in the last two dims of ``t`` (default: the centre); refused when outside."""
    px, py = (t.shape[-2] // 2 if x is None else x), (t.shape[-1] // 2 if y is None else y)
    if not (0 <= px < t.shape[-2] and 0 <= py < t.shape[-1]):
        raise MechscopeError(
            f"position ({px}, {py}) is outside the {t.shape[-2]}x{t.shape[-1]} map of layer {layer!r} at this "
            "input size; use a larger image or a position inside the map"
        )
    return px, py


# ---- units ----------------------------------------------------------------------------------------------------


def channel(layer: str, n: int, batch: BatchIndex = None) -> Objective:
    """Mean activation of channel ``n`` of ``layer`` over space (and over the batch, or at ``batch``)."""
    return Objective(lambda a: _select(a[layer], batch)[:, n].mean(), [layer], f"channel({layer}:{n})")


def neuron(layer: str, n: int, x: int | None = None, y: int | None = None, batch: BatchIndex = None) -> Objective:
    """Activation of channel ``n`` at one position (default: the centre) of a ``[batch, C, X, Y]`` layer."""

    def fn(a: Activations) -> torch.Tensor:
        t = _select(a[layer], batch)[:, n]
        px, py = _centre(t, x, y, layer)
        return t[:, px, py].mean()

    return Objective(fn, [layer], f"neuron({layer}:{n})")


def _dot_cossim(acts: torch.Tensor, vec: torch.Tensor, cossim_pow: float) -> torch.Tensor:
    """Lucid's dot product along channels, optionally times the (floored) cosine similarity to a power.

    ``acts`` ``[batch, C, ...]``, ``vec`` ``[C]``; returns the mean over batch and positions.
    """
    v = vec.to(acts.device, acts.dtype).view(1, -1, *([1] * (acts.dim() - 2)))
    dot = (acts * v).sum(1)
    if cossim_pow == 0:
        return dot.mean()
    eps = 1e-4
    cossim = dot / (eps + acts.norm(dim=1)) / (eps + v.norm())
    return (dot * cossim.clamp(min=0.1) ** cossim_pow).mean()


def direction(layer: str, vec: torch.Tensor, batch: BatchIndex = None, cossim_pow: float = 0.0) -> Objective:
    """Dot product of every position's activation vector with ``vec`` ``[C]`` (Lucid's ``direction``)."""
    vec = torch.as_tensor(vec, dtype=torch.float32)
    return Objective(lambda a: _dot_cossim(_select(a[layer], batch), vec, cossim_pow), [layer], f"direction({layer})")


def direction_neuron(
    layer: str, vec: torch.Tensor, batch: BatchIndex = None, x: int | None = None, y: int | None = None,
    cossim_pow: float = 0.0,
) -> Objective:
    """``direction`` at one position (default: the centre)."""
    vec = torch.as_tensor(vec, dtype=torch.float32)

    def fn(a: Activations) -> torch.Tensor:
        t = _select(a[layer], batch)
        px, py = _centre(t, x, y, layer)
        return _dot_cossim(t[:, :, px, py], vec, cossim_pow)

    return Objective(fn, [layer], f"direction_neuron({layer})")


def channel_interpolate(layer1: str, n1: int, layer2: str, n2: int) -> Objective:
    """Across the batch, weight moves linearly from channel ``n1`` of ``layer1`` to ``n2`` of ``layer2``.

    Element ``i`` of ``b`` maximizes ``(1 - i/(b-1)) * mean(layer1[i, n1]) + i/(b-1) * mean(layer2[i, n2])``.
    """

    def fn(a: Activations) -> torch.Tensor:
        t1, t2 = a[layer1][:, n1], a[layer2][:, n2]
        b = t1.shape[0]
        w = torch.linspace(0, 1, b, device=t1.device, dtype=t1.dtype) if b > 1 else t1.new_zeros(1)
        return ((1 - w) * t1.flatten(1).mean(1) + w * t2.flatten(1).mean(1)).sum()

    return Objective(fn, [layer1, layer2], f"channel_interpolate({layer1}:{n1}, {layer2}:{n2})")


def class_logit(layer: str, label: int, batch: BatchIndex = None) -> Objective:
    """The logit of class ``label`` in a ``[batch, classes]`` layer, summed over the batch (Lucid's)."""
    return Objective(lambda a: _select(a[layer], batch)[:, label].sum(), [layer], f"class_logit({layer}:{label})")


def deepdream(layer: str, batch: BatchIndex = None) -> Objective:
    """Mean squared activation of a whole layer (DeepDream)."""
    return Objective(lambda a: (_select(a[layer], batch) ** 2).mean(), [layer], f"deepdream({layer})")


# ---- batch structure ------------------------------------------------------------------------------------------


def diversity(layer: str, batch: BatchIndex = None) -> Objective:
    """Mean pairwise cosine similarity of the batch elements' Gram matrices at ``layer`` (a penalty: subtract it).

    For ``b`` elements: ``sum_{i != j} <G_i, G_j> / b`` with ``G_i`` the channel Gram matrix of element ``i``,
    normalised to unit Frobenius norm.
    """

    def fn(a: Activations) -> torch.Tensor:
        t = _select(a[layer], batch)
        flat = t.flatten(2)  # [b, C, positions]
        grams = F.normalize((flat @ flat.transpose(1, 2)).flatten(1), dim=1, eps=1e-10)
        sims = grams @ grams.T
        return (sims.sum() - sims.diagonal().sum()) / t.shape[0]

    return Objective(fn, [layer], f"diversity({layer})")


def alignment(layer: str, decay_ratio: float = 2.0) -> Objective:
    """Encourage neighbouring batch elements to have similar activations (for interpolations); negative.

    ``-sum_{d=1..4} sum_i mean((a_i - a_{i+d})**2) / decay_ratio**d``.
    """

    def fn(a: Activations) -> torch.Tensor:
        t = a[layer]
        total = t.new_zeros(())
        for d in range(1, 5):
            if d < t.shape[0]:
                total = total + ((t[:-d] - t[d:]) ** 2).flatten(1).mean(1).sum() / decay_ratio**d
        return -total

    return Objective(fn, [layer], f"alignment({layer})")


# ---- image penalties (positive: subtract them) ----------------------------------------------------------------


def L1(layer: str = INPUT, constant: float = 0.0, batch: BatchIndex = None) -> Objective:  # noqa: N802
    """``sum |x - constant|``."""
    return Objective(lambda a: (_select(a[layer], batch) - constant).abs().sum(), [layer], f"L1({layer})")


def L2(layer: str = INPUT, constant: float = 0.0, epsilon: float = 1e-6, batch: BatchIndex = None) -> Objective:  # noqa: N802
    """``sqrt(epsilon + sum (x - constant)**2)``."""
    return Objective(
        lambda a: torch.sqrt(epsilon + ((_select(a[layer], batch) - constant) ** 2).sum()), [layer], f"L2({layer})"
    )


def total_variation(layer: str = INPUT, batch: BatchIndex = None) -> Objective:
    """Sum of absolute differences between vertically and horizontally adjacent pixels (TensorFlow's)."""

    def fn(a: Activations) -> torch.Tensor:
        t = _select(a[layer], batch)
        return (t[..., 1:, :] - t[..., :-1, :]).abs().sum() + (t[..., :, 1:] - t[..., :, :-1]).abs().sum()

    return Objective(fn, [layer], f"total_variation({layer})")


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Lucid's 3x3 blur (centre 1, border 0.5) per channel, normalised for the zero padding at the edges."""
    k = torch.full((3, 3), 0.5, dtype=x.dtype, device=x.device)
    k[1, 1] = 1.0
    c = x.shape[1]
    weight = k.expand(c, 1, 3, 3)
    return F.conv2d(x, weight, padding=1, groups=c) / F.conv2d(torch.ones_like(x), weight, padding=1, groups=c)


def blur_input_each_step() -> Objective:
    """``0.5 * sum (x - blur(x))**2`` with the blurred image held constant: a penalty on high frequencies."""

    def fn(a: Activations) -> torch.Tensor:
        x = a[INPUT]
        return 0.5 * ((x - _blur(x).detach()) ** 2).sum()

    return Objective(fn, [INPUT], "blur_input_each_step")


# ---- shorthand ------------------------------------------------------------------------------------------------


def unit_objective(unit: str | Unit, batch: BatchIndex = None) -> Objective:
    """The objective a unit name stands for: ``channel`` for ``layer:n``, ``neuron`` for ``layer:n@x,y``."""
    name = parse(unit)
    if isinstance(name, Layer):
        raise MechscopeError(f"{str(unit)!r} names a whole layer; say which channel, e.g. '{unit}:0'")
    if not isinstance(name, Unit):
        raise MechscopeError(f"{str(unit)!r} is not a vision unit")
    if name.position is None:
        return channel(name.layer, name.channel, batch)
    return neuron(name.layer, name.channel, *name.position, batch=batch)


def as_objective(spec: str | Unit | Objective) -> Objective:
    """``Objective`` as is; a unit name -> ``unit_objective``."""
    return spec if isinstance(spec, Objective) else unit_objective(spec)
