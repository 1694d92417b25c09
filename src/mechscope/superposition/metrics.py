"""Geometry of a toy model's features: norms, interference, feature dimensionality, and their pictures.

Every function takes ``W [..., n_features, n_hidden]`` - one matrix ``[n_features, n_hidden]``
or a batch ``[instances, n_features, n_hidden]`` - whose row ``W_i`` is feature ``i``'s
direction in the hidden space, and keeps the leading batch shape.  ``Ŵ_i = W_i / ‖W_i‖``
(0 for a zero row).  Names follow *Toy Models of Superposition* (Elhage et al. 2022).

>>> import math
>>> pentagon = torch.tensor([[math.cos(2 * math.pi * k / 5), math.sin(2 * math.pi * k / 5)] for k in range(5)])
>>> feature_dimensionality(pentagon).round(decimals=4)
tensor([0.4000, 0.4000, 0.4000, 0.4000, 0.4000])
>>> dimensions_per_feature(pentagon).round(decimals=4)
tensor(0.4000)
>>> feature_dimensionality(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]]))
tensor([0.5000, 0.5000, 0.0000])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mechscope.errors import MechscopeError

__all__ = [
    "DIMENSIONALITY_FRACTIONS",
    "dimensions_per_feature",
    "feature_dimensionality",
    "feature_norms",
    "gram",
    "interference",
    "neuron_kinds",
    "neuron_weights",
    "plot_dimensionality",
    "plot_geometry_2d",
    "plot_gram",
    "plot_norms",
    "superposition_fraction",
]

#: The fractions ``D_i`` settles on in the paper's sticky geometries (1, tetrahedron 3/4, triangle
#: 2/3, antipodal pair 1/2, pentagon 2/5, square antiprism 3/8).
DIMENSIONALITY_FRACTIONS = (1.0, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 3 / 8)


def _check(W: Tensor) -> Tensor:
    if not isinstance(W, Tensor):
        W = torch.as_tensor(W)
    if W.dim() < 2:
        raise MechscopeError(f"W must be [..., n_features, n_hidden]; got shape {tuple(W.shape)}.")
    return W.detach() if W.requires_grad else W


def feature_norms(W: Tensor) -> Tensor:
    """``‖W_i‖``: how strongly each feature is represented.  ``[..., n_features]``."""
    return _check(W).norm(dim=-1)


def gram(W: Tensor) -> Tensor:
    """``W Wᵀ``: dot products between feature directions.  ``[..., n_features, n_features]``."""
    W = _check(W)
    return W @ W.transpose(-1, -2)


def _unit(W: Tensor) -> Tensor:
    norms = W.norm(dim=-1, keepdim=True)
    return torch.where(norms > 0, W / norms.clamp_min(torch.finfo(W.dtype).tiny), torch.zeros_like(W))


def _projections(W: Tensor) -> Tensor:
    """``(Ŵ_i · W_j)²`` as ``[..., i, j]``."""
    return (_unit(W) @ W.transpose(-1, -2)).square()


def interference(W: Tensor) -> Tensor:
    """``Σ_{j≠i} (Ŵ_i · W_j)²``: how much other features leak onto feature i's direction.

    0 for an orthogonal (or zero) feature; the paper colours its norm bars by this.
    ``[..., n_features]``.
    """
    W = _check(W)
    proj = _projections(W)
    eye = torch.eye(W.shape[-2], dtype=torch.bool, device=W.device)
    return proj.masked_fill(eye, 0).sum(dim=-1)


def feature_dimensionality(W: Tensor) -> Tensor:
    """``D_i = ‖W_i‖² / Σ_j (Ŵ_i · W_j)²``: the fraction of a dimension feature i gets.

    1 for a feature with a dimension to itself, 1/2 for an antipodal pair, 2/5 in a pentagon,
    3/4 in a tetrahedron; 0 for a zero feature (never NaN).  ``[..., n_features]``.
    """
    W = _check(W)
    sq = W.square().sum(dim=-1)
    denom = _projections(W).sum(dim=-1)  # includes j = i, which is ‖W_i‖²
    return torch.where(denom > 0, sq / denom.clamp_min(torch.finfo(W.dtype).tiny), torch.zeros_like(sq))


def dimensions_per_feature(W: Tensor) -> Tensor:
    """``D* = m / ‖W‖_F²`` with ``m = n_hidden``: hidden dimensions per (embedded) feature.

    ``inf`` when ``W`` is all zero.  Batch shape ``[...]``.
    """
    W = _check(W)
    return W.shape[-1] / W.square().sum(dim=(-2, -1))


def superposition_fraction(W: Tensor, norm_threshold: float = 0.5, interference_threshold: float = 0.1) -> Tensor:
    """Of the represented features (``‖W_i‖ > norm_threshold``), the fraction in superposition.

    A represented feature is in superposition when ``interference(W)_i > interference_threshold``.
    0 when no feature is represented.  Batch shape ``[...]``.
    """
    W = _check(W)
    represented = feature_norms(W) > norm_threshold
    superposed = represented & (interference(W) > interference_threshold)
    return superposed.sum(dim=-1) / represented.sum(dim=-1).clamp_min(1)  # 0 / 1 when none


def neuron_weights(W: Tensor) -> Tensor:
    """Each hidden neuron's input weights over features: ``Wᵀ``, ``[..., n_hidden, n_features]``.

    For the ``"relu_hidden"`` model, row ``k`` is neuron ``k``'s weight on every feature (a view
    of ``W``, no copy); the paper draws these as one stacked bar per neuron.
    """
    return _check(W).transpose(-1, -2)


def neuron_kinds(W: Tensor, threshold: float = 0.5, dead: float = 1e-3) -> dict[str, Tensor]:
    """Count dead, monosemantic and polysemantic hidden neurons.

    Neuron ``k`` is *dead* when its largest ``|W[i, k]|`` is ``<= dead``; otherwise the
    features with ``|W[i, k]| >= threshold *`` that largest weight are the ones it responds
    to: one makes it *monosemantic*, more *polysemantic*.  Returns ``{"dead", "monosemantic",
    "polysemantic"}`` -> int64 counts of batch shape ``[...]`` (they add up to ``n_hidden``).
    """
    if not 0 < threshold <= 1:
        raise MechscopeError(f"neuron_kinds: threshold is a fraction of the largest weight, in (0, 1]; got {threshold}.")
    w = neuron_weights(W).abs()  # [..., n_hidden, n_features]
    largest = w.amax(dim=-1)
    is_dead = largest <= dead
    n_strong = (w >= threshold * largest.unsqueeze(-1)).sum(dim=-1)
    return {
        "dead": is_dead.sum(dim=-1),
        "monosemantic": (~is_dead & (n_strong == 1)).sum(dim=-1),
        "polysemantic": (~is_dead & (n_strong > 1)).sum(dim=-1),
    }


# ------------------------------------------------------------------------------------ pictures


def _figure(n_panels: int, panel_size: tuple[float, float], max_cols: int = 6):
    from matplotlib.figure import Figure

    cols = min(n_panels, max_cols)
    rows = -(-n_panels // cols)
    fig = Figure(figsize=(panel_size[0] * cols, panel_size[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _as_batch(W: Tensor) -> Tensor:
    W = _check(W).float().cpu()
    if W.dim() == 2:
        W = W[None]
    if W.dim() != 3:
        raise MechscopeError(f"expected W [n_features, n_hidden] or [instances, n_features, n_hidden]; got {tuple(W.shape)}.")
    return W


def _titles(titles: Sequence[str] | None, n: int) -> list[str]:
    if titles is None:
        return [f"instance {i}" for i in range(n)] if n > 1 else [""]
    titles = list(titles)
    if len(titles) != n:
        raise MechscopeError(f"got {len(titles)} titles for {n} instances.")
    return titles


def plot_norms(W: Tensor, titles: Sequence[str] | None = None, cmap: str = "viridis"):
    """Horizontal bars of ``‖W_i‖`` per feature, one panel per instance, coloured by superposition.

    Colour: ``interference(W)`` = ``Σ_{j≠i}(Ŵ_i·W_j)²`` clipped to [0, 1] (dark: a dimension of
    its own, bright: in superposition), as in the paper.  Feature 0 is drawn at the top.
    Returns a matplotlib ``Figure``.
    """
    import matplotlib

    W = _as_batch(W)
    norms, sup = feature_norms(W), interference(W).clamp(0, 1)
    colormap = matplotlib.colormaps[cmap]
    n_inst, n_feat = W.shape[0], W.shape[1]
    fig, axes = _figure(n_inst, (2.0, 0.25 * n_feat + 1.0))
    xmax = max(1.0, float(norms.max()) * 1.05)
    for ax, title, nrm, s in zip(axes, _titles(titles, n_inst), norms, sup):
        ax.barh(range(n_feat), nrm.tolist(), color=[colormap(float(v)) for v in s])
        ax.set_xlim(0, xmax)
        ax.set_ylim(n_feat - 0.5, -0.5)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("‖W_i‖")
    axes[0].set_ylabel("feature")
    return fig


def plot_gram(W: Tensor, titles: Sequence[str] | None = None):
    """Heatmap of ``W Wᵀ`` (red positive, blue negative, symmetric scale), one panel per instance.

    Returns a matplotlib ``Figure``.
    """
    W = _as_batch(W)
    G = gram(W)
    vmax = max(float(G.abs().max()), 1e-12)
    n_inst = W.shape[0]
    fig, axes = _figure(n_inst, (2.6, 2.4))
    image = None
    for ax, title, g in zip(axes, _titles(titles, n_inst), G):
        image = ax.imshow(g.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="W Wᵀ")
    return fig


def plot_geometry_2d(W: Tensor, titles: Sequence[str] | None = None, cmap: str = "viridis"):
    """Feature directions in a 2-D hidden space: a line from the origin to each ``W_i``.

    Needs ``n_hidden = 2``.  Feature ``i`` is coloured by its index (the importance order in the
    paper's setups).  One panel per instance.  Returns a matplotlib ``Figure``.
    """
    import matplotlib

    W = _as_batch(W)
    if W.shape[-1] != 2:
        raise MechscopeError(f"plot_geometry_2d needs n_hidden = 2; W has n_hidden = {W.shape[-1]}.")
    n_inst, n_feat = W.shape[0], W.shape[1]
    colormap = matplotlib.colormaps[cmap]
    colours = [colormap(i / max(1, n_feat - 1)) for i in range(n_feat)]
    lim = max(1.0, float(W.abs().max()) * 1.1)
    fig, axes = _figure(n_inst, (2.2, 2.2))
    for ax, title, w in zip(axes, _titles(titles, n_inst), W):
        for i, (a, b) in enumerate(w.tolist()):
            ax.plot([0, a], [0, b], color=colours[i], lw=1.5)
            ax.scatter([a], [b], color=colours[i], s=12, zorder=3)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=9)
    return fig


def plot_dimensionality(W: Tensor, density: Tensor | Sequence[float], cmap: str = "viridis"):
    """Feature dimensionality ``D_i`` against ``1 / (1 - S)`` = 1 / density, all instances in one plot.

    ``W [instances, n_features, n_hidden]``; ``density [instances]`` (each instance's feature
    probability; a ``[instances, n_features]`` tensor gives each feature its own).  Dots:
    ``D_i`` of every feature; crosses: ``dimensions_per_feature`` per instance; dotted lines at
    the sticky fractions 1, 3/4, 2/3, 1/2, 2/5, 3/8.  Log x axis.  Returns a matplotlib ``Figure``.
    """
    from matplotlib.figure import Figure

    W = _as_batch(W)
    n_inst, n_feat = W.shape[0], W.shape[1]
    dens = torch.as_tensor(density, dtype=torch.float32).cpu()
    if dens.dim() == 1:
        dens = dens[:, None]
    try:
        dens = dens.expand(n_inst, n_feat)
    except RuntimeError:
        raise MechscopeError(
            f"density of shape {tuple(torch.as_tensor(density).shape)} does not fit {n_inst} instances x {n_feat} features."
        ) from None
    x = 1.0 / dens
    D = feature_dimensionality(W)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for frac in DIMENSIONALITY_FRACTIONS:
        ax.axhline(frac, color="grey", ls=":", lw=0.8)
    ax.scatter(x.ravel().numpy(), D.ravel().numpy(), c=D.ravel().numpy(), cmap=cmap, vmin=0, vmax=1, s=10, alpha=0.7)
    dpf = dimensions_per_feature(W).clamp(max=1.5)
    ax.scatter(x.mean(dim=1).numpy(), dpf.numpy(), marker="x", color="black", s=20, label="m / ‖W‖²_F")
    ax.set_xscale("log")
    ax.set_xlabel("1 / (1 − S)  (1 / feature density)")
    ax.set_ylabel("feature dimensionality D_i")
    ax.set_ylim(-0.05, 1.1)
    ax.legend(loc="upper right", fontsize=8)
    return fig
