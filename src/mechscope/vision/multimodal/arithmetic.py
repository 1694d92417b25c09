"""Concept arithmetic: a concept as a sparse non-negative sum of unit directions, and an NMF atlas of concepts.

The paper (Goh et al. 2021) writes emotion words' text embeddings as sparse non-negative combinations of unit
directions ("surprise" ≈ celebration + shock + ...), and factors the matrix of such combinations (concepts ×
units) by NMF into an "atlas of emotions".  Here, on any concepts:

- ``sparse_concept_decomposition(target [D], directions [U, D], k=3)``: greedy non-negative orthogonal matching
  pursuit (pick the unit best aligned with the residual, refit non-negative least squares on the chosen units,
  ``k`` times), or with ``l1=`` a non-negative Lasso; both through scikit-learn.  Directions and target are
  normalised first, so weights compare units on one scale; ``cosine`` says how well the sum reconstructs.
- ``concept_atlas(matrix [C, U], k)``: NMF (the helper of ``vision/circuits/nmf.py``) into ``k`` factors, with a
  2-D layout: factor ``j`` is a point on the unit circle at angle ``2πj/k``, each concept sits at the mean of the
  factor points weighted by its (normalised) loadings, so concepts made of the same factors sit together.
  ``plot_concept_atlas`` draws it.

Example::

    >>> import torch
    >>> dirs = torch.eye(4)
    >>> d = sparse_concept_decomposition(torch.tensor([2.0, 0.0, 1.0, 0.0]), dirs, k=2)
    >>> d.support, [round(w, 3) for w in d.weights[d.support].tolist()], round(d.cosine, 6)
    ([0, 2], [0.894, 0.447], 1.0)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mechscope.errors import MechscopeError


@dataclass(frozen=True)
class Decomposition:
    """``weights`` ``[U]`` (non-negative, on the normalised directions), ``support`` (units with weight > 0, by
    decreasing weight), ``reconstruction`` ``[D]`` (``weights @ normalised directions``) and ``cosine`` between
    reconstruction and target (0 when nothing was chosen)."""

    weights: torch.Tensor
    support: list[int]
    reconstruction: torch.Tensor
    cosine: float


def _nonneg_lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LinearRegression

    return LinearRegression(positive=True, fit_intercept=False).fit(x, y).coef_


def sparse_concept_decomposition(
    target: torch.Tensor, directions: torch.Tensor, k: int | None = 3, l1: float | None = None,
) -> Decomposition:
    """Approximate ``target`` ``[D]`` by a sparse non-negative combination of the rows of ``directions`` ``[U, D]``.

    ``k``: the number of units greedy non-negative OMP picks (stops early when no unit is positively aligned with the
    residual).  ``l1``: instead, scikit-learn's ``Lasso(alpha=l1, positive=True)`` on all units (its objective is
    ``||t - w @ V||^2 / (2D) + l1 * ||w||_1``, ``V`` the normalised directions).  Give one of the two.
    """
    t = torch.as_tensor(target).detach().double().cpu()
    v = torch.as_tensor(directions).detach().double().cpu()
    if t.dim() != 1:
        raise MechscopeError(f"target must be one embedding [D], got shape {tuple(t.shape)}")
    if v.dim() != 2 or v.shape[1] != t.shape[0]:
        raise MechscopeError(f"directions must be [U, {t.shape[0]}] (one row per unit, the target's width), got "
                             f"{tuple(v.shape)}")
    if (k is None) == (l1 is None):
        raise MechscopeError("give exactly one of k (greedy non-negative OMP) or l1 (non-negative Lasso); "
                             "to use l1, pass k=None")
    if t.norm() == 0:
        raise MechscopeError("target is all zeros; there is nothing to decompose")
    t = t / t.norm()
    v = F.normalize(v, dim=1)
    x, y = v.T.numpy(), t.numpy()                     # samples = embedding dims, features = units
    w = np.zeros(v.shape[0])
    if l1 is not None:
        from sklearn.linear_model import Lasso

        if l1 <= 0:
            raise MechscopeError(f"l1 must be > 0, not {l1}")
        w = Lasso(alpha=l1, positive=True, fit_intercept=False, max_iter=10000).fit(x, y).coef_
    else:
        if k < 1:
            raise MechscopeError(f"k must be a positive number of units, not {k}")
        chosen: list[int] = []
        residual = y.copy()
        for _ in range(min(k, v.shape[0])):
            scores = x.T @ residual
            scores[chosen] = -np.inf
            best = int(np.argmax(scores))
            if scores[best] <= 1e-12:
                break
            chosen.append(best)
            w = np.zeros(v.shape[0])
            w[chosen] = _nonneg_lstsq(x[:, chosen], y)
            residual = y - x @ w
    weights = torch.from_numpy(np.clip(w, 0, None)).float()
    recon = weights.double() @ v
    cos = float(recon @ t / recon.norm()) if recon.norm() > 0 else 0.0
    order = torch.argsort(weights, descending=True, stable=True)
    support = [int(i) for i in order if weights[i] > 0]
    return Decomposition(weights, support, recon.float(), cos)


@dataclass(frozen=True)
class ConceptAtlas:
    """NMF of a concepts × units matrix: ``concept_factors`` ``[C, k]`` times ``unit_factors`` ``[k, U]``;
    ``layout`` ``[C, 2]`` (see the module docstring); ``anchors`` ``[k, 2]`` (each factor's point); ``error``:
    reconstruction error (Frobenius) relative to the matrix's norm."""

    concept_factors: torch.Tensor
    unit_factors: torch.Tensor
    layout: torch.Tensor
    anchors: torch.Tensor
    error: float


def concept_atlas(matrix: torch.Tensor, k: int = 2, clip_negative: bool = False, max_iter: int = 1000) -> ConceptAtlas:
    """NMF of a non-negative ``matrix`` ``[C, U]`` (e.g. each concept's sparse decomposition weights, or its σ
    responses with ``clip_negative=True``) into ``k`` factors, with a 2-D layout of the concepts.

    >>> m = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 0, 1.0]])
    >>> a = concept_atlas(m, k=2)
    >>> a.layout.shape, bool((a.layout[0] - a.layout[1]).norm() < (a.layout[0] - a.layout[2]).norm())
    (torch.Size([3, 2]), True)
    """
    from mechscope.vision.circuits.nmf import _nmf   # the area's one NMF call (sklearn, nndsvda, seeded)

    m = torch.as_tensor(matrix).detach().double().cpu()
    if m.dim() != 2:
        raise MechscopeError(f"matrix must be [concepts, units], got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise MechscopeError("matrix has NaN or infinite entries (an empty cell of a modality table?); fill them first")
    if (m < 0).any():
        if not clip_negative:
            raise MechscopeError("NMF needs a non-negative matrix; pass clip_negative=True to set negatives to 0")
        m = m.clamp(min=0)
    if not 1 <= k <= min(m.shape):
        raise MechscopeError(f"k must be in 1..{min(m.shape)} (at most the smaller side of a {tuple(m.shape)} matrix)")
    if m.sum() == 0:
        raise MechscopeError("matrix is all zeros; there is nothing to factor")
    w, h, err = _nmf(m, k, max_iter)
    angles = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    anchors = torch.stack([angles.cos(), angles.sin()], 1)
    mass = w.sum(1, keepdim=True)
    share = torch.where(mass > 0, w / mass.clamp_min(1e-300), torch.zeros_like(w))
    return ConceptAtlas(w.float(), h.float(), (share @ anchors).float(), anchors.float(), err / float(m.norm()))


def plot_concept_atlas(
    atlas: ConceptAtlas, labels: Sequence[str], path: str | os.PathLike | None = None,
    factor_names: Sequence[str] | None = None,
) -> Any:
    """Draw the atlas (concepts as labelled points, factors as anchors); save it as a PNG when ``path`` is given.

    Returns the matplotlib ``Figure`` (not registered with pyplot).
    """
    from mechscope.plots import agg_figure, save_figure

    if len(labels) != atlas.layout.shape[0]:
        raise MechscopeError(f"{len(labels)} labels for {atlas.layout.shape[0]} concepts; give one label per concept")
    k = atlas.anchors.shape[0]
    names = list(factor_names) if factor_names is not None else [f"factor {j}" for j in range(k)]
    if len(names) != k:
        raise MechscopeError(f"{len(names)} factor names for {k} factors")
    fig = agg_figure(4.5, 4.5)
    ax = fig.add_subplot()
    ax.scatter(atlas.anchors[:, 0], atlas.anchors[:, 1], marker="s", color="0.6")
    for (x, y), name in zip(atlas.anchors.tolist(), names):
        ax.annotate(name, (x, y), color="0.4", fontsize=8, ha="center", va="bottom")
    top = atlas.concept_factors.argmax(1)
    ax.scatter(atlas.layout[:, 0], atlas.layout[:, 1], c=top.tolist(), cmap="tab10", vmin=0, vmax=9)
    for (x, y), label in zip(atlas.layout.tolist(), labels):
        ax.annotate(label, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_aspect("equal")
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.3, 1.3)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"concept atlas (NMF, {k} factors)")
    if path is not None:
        save_figure(fig, Path(path))
    return fig
