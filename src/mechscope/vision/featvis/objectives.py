"""Objectives: small closures over captured activations, with an algebra (``+``, ``-``, scalar ``*``, ``sum``).

An ``Objective`` knows which layers it reads (so ``render`` runs only that part of the network) and maps
``{layer: activation}`` to a scalar to *maximize*.  ``"layer:n"`` is shorthand for ``channel("layer", n)`` and
``"layer:n@x,y"`` for ``neuron("layer", n, x, y)``; parsing goes through ``mechscope.units``.

Example::

    >>> from mechscope.vision.featvis import objectives as obj
    >>> o = obj.channel("mixed3b", 379) - 0.5 * obj.channel("mixed3b", 406)
    >>> o.layers
    ('mixed3b',)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch

from mechscope.errors import MechscopeError
from mechscope.units import Layer, Unit, parse

Activations = Mapping[str, torch.Tensor]


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


def _select(t: torch.Tensor, batch: int | None) -> torch.Tensor:
    return t if batch is None else t[batch : batch + 1]


def channel(layer: str, n: int, batch: int | None = None) -> Objective:
    """Mean activation of channel ``n`` of ``layer`` over space (and over the batch, or at index ``batch``)."""
    return Objective(lambda a: _select(a[layer], batch)[:, n].mean(), [layer], f"channel({layer}:{n})")


def neuron(layer: str, n: int, x: int | None = None, y: int | None = None, batch: int | None = None) -> Objective:
    """Activation of channel ``n`` at one position (default: the centre) of a ``[batch, C, X, Y]`` layer."""

    def fn(a: Activations) -> torch.Tensor:
        t = _select(a[layer], batch)[:, n]
        px = t.shape[1] // 2 if x is None else x
        py = t.shape[2] // 2 if y is None else y
        return t[:, px, py].mean()

    return Objective(fn, [layer], f"neuron({layer}:{n})")


def as_objective(spec: str | Objective) -> Objective:
    """``Objective`` as is; ``"layer:n"`` -> channel; ``"layer:n@x,y"`` -> neuron."""
    if isinstance(spec, Objective):
        return spec
    name = parse(spec)
    if isinstance(name, Unit):
        if name.position is None:
            return channel(name.layer, name.channel)
        return neuron(name.layer, name.channel, *name.position)
    if isinstance(name, Layer):
        raise MechscopeError(f"{spec!r} names a whole layer; say which channel, e.g. '{spec}:0'")
    raise MechscopeError(f"{spec!r} is not a vision unit")
