"""Faceted feature visualization: a linear probe's facet direction added to a unit's objective.

The paper (Goh et al. 2021) draws one facet of a multimodal unit (its picture, its written word, ...) by training a
linear probe that separates that facet's images from others in a layer and adding the probe's direction, with a
weight, to the unit's objective.  ``facet_direction(acts_a, acts_b)`` is the probe (difference of class means, or
scikit-learn's logistic regression), a unit vector ``[U]`` pointing toward ``a``; ``faceted_objective`` is
``unit objective + weight * direction(layer, facet)`` in the objective algebra of ``vision/featvis/objectives.py``,
ready for ``vision.featvis.render``.

Example::

    >>> import torch
    >>> words, pictures = torch.randn(20, 8, 4, 4) + 1.0, torch.randn(20, 8, 4, 4)
    >>> facet = facet_direction(words, pictures)
    >>> facet.shape, round(float(facet.norm()), 4)
    (torch.Size([8]), 1.0)
    >>> o = faceted_objective("mixed4b:3", "mixed4a", torch.ones(8), weight=0.5)
    >>> o.layers
    ('mixed4b', 'mixed4a')
"""

from __future__ import annotations

import torch

from mechscope.errors import MechscopeError
from mechscope.units import Unit
from mechscope.vision.featvis.objectives import Objective, as_objective, direction

METHODS = ("mean", "logistic")


def _pooled(acts: torch.Tensor, what: str) -> torch.Tensor:
    a = torch.as_tensor(acts).detach().double().cpu()
    if a.dim() < 2 or a.shape[0] < 1:
        raise MechscopeError(f"{what} must be [N, U] or [N, U, H, W] with N >= 1, got shape {tuple(a.shape)}")
    return a.flatten(2).mean(2) if a.dim() > 2 else a


def facet_direction(
    acts_a: torch.Tensor, acts_b: torch.Tensor, method: str = "mean", C: float = 1.0,  # noqa: N803
) -> torch.Tensor:
    """A unit vector ``[U]`` separating layer activations of facet ``a`` ``[N, U, ...]`` from ``b`` ``[M, U, ...]``.

    Activations are averaged over positions.  ``method="mean"``: ``mean(a) - mean(b)``, normalised;
    ``"logistic"``: the weights of scikit-learn's ``LogisticRegression(C=C)`` on the pooled activations (label 1 =
    ``a``), normalised.  Positive dot product = more like ``a``.
    """
    a, b = _pooled(acts_a, "acts_a"), _pooled(acts_b, "acts_b")
    if a.shape[1] != b.shape[1]:
        raise MechscopeError(f"acts_a has {a.shape[1]} units and acts_b {b.shape[1]}; use the same layer for both")
    if method == "mean":
        v = a.mean(0) - b.mean(0)
    elif method == "logistic":
        from sklearn.linear_model import LogisticRegression

        x = torch.cat([a, b]).numpy()
        y = [1] * a.shape[0] + [0] * b.shape[0]
        v = torch.from_numpy(LogisticRegression(C=C, max_iter=2000).fit(x, y).coef_[0])
    else:
        raise MechscopeError(f"unknown facet method {method!r}; valid: {', '.join(METHODS)}")
    if v.norm() == 0:
        raise MechscopeError("the two facets' activations do not differ: no direction separates them")
    return (v / v.norm()).float()


def faceted_objective(
    unit: str | Unit | Objective, facet_layer: str, facet: torch.Tensor, weight: float = 1.0, cossim_pow: float = 0.0,
) -> Objective:
    """``as_objective(unit) + weight * direction(facet_layer, facet)``: draw the unit as the facet.

    ``unit``: ``"layer:n"`` or any objective; ``facet`` ``[U]``: a ``facet_direction`` of ``facet_layer``'s units.
    """
    f = torch.as_tensor(facet)
    if f.dim() != 1:
        raise MechscopeError(f"facet must be one direction [U] over {facet_layer!r}'s units, got shape "
                             f"{tuple(f.shape)}")
    return as_objective(unit) + weight * direction(facet_layer, f, cossim_pow=cossim_pow)
