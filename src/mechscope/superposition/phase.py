"""Phase diagrams of small toy models done exactly: the expected loss as a deterministic function of the weights,
its numerical minimisation from many starts, and the phases of the solutions.

The ReLU-output toy model ``out = ReLU(x W Wᵀ + b)`` with independent features (feature ``j`` present with
probability ``p_j``, then ``U[0, 1]``) has the expected loss (``toy.train_toy``'s: importance-weighted squared
error, mean over features)::

    L(W, b) = 1/n  Σ_i I_i  Σ_S P(S)  E[(ReLU(x_S · M_{S,i} + b_i) - x_i)² | S],      M = W Wᵀ

summed exactly over the ``2ⁿ`` presence patterns ``S``.  Within a pattern, one present variable (``x_i`` itself
when present) is integrated in closed form (the integrand is piecewise quadratic in it), which leaves a smooth
(C¹) function of the others, integrated by Gauss-Legendre quadrature (``nodes`` per axis; 24 gives ~1e-7 for
n <= 3).  Cost: ``n 2ⁿ nodes^(n-1)`` evaluations per instance — meant for n <= 4.

``optimal_solutions`` minimises it for a batch of settings at once (Adam on the exact loss, many random starts
plus the named candidate solutions, best kept); ``classify_2_1`` / ``classify_extra`` name the phases.

>>> import torch
>>> W = torch.tensor([[[1.0], [-1.0]]]); b = torch.zeros(1, 2)
>>> round(float(expected_loss(W, b, torch.ones(1, 2), torch.full((1, 2), 0.1))[0]), 5)  # antipodal, sparse
0.00167
>>> classify_2_1(W), classify_extra(torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]))
(['superposition'], ['not represented'])
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from mechscope.errors import MechscopeError
from mechscope.superposition import metrics as M

__all__ = ["EXTRA_PHASES", "PHASES_2_1", "OptimalSolutions", "agreement", "candidates", "classify_2_1",
           "classify_extra", "expected_loss", "optimal_solutions", "plot_phase_maps", "restricted_2_1",
           "shuffled_agreement", "transition"]

#: The n=2/m=1 phases (``experiments._phase_of``'s categories, in its figure's order).
PHASES_2_1 = ("feature 1 only", "feature 2 only", "superposition", "both, same side", "neither")
#: The phases of the paper's "extra" (last) feature: not learned, its own dimension, in superposition.
EXTRA_PHASES = ("not represented", "dedicated dimension", "superposition")


@lru_cache(maxsize=8)
def _gauss(nodes: int) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes and weights on [0, 1] (float64)."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    return torch.tensor((x + 1) / 2), torch.tensor(w / 2)


def _grid(k: int, nodes: int) -> tuple[Tensor, Tensor]:
    """A tensor-product rule on [0, 1]^k: points ``[Q, k]`` and weights ``[Q]`` (``Q = nodes^k``; one point for k=0)."""
    x, w = _gauss(nodes)
    if k == 0:
        return torch.zeros(1, 0, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    pts = torch.cartesian_prod(*[x] * k).reshape(-1, k)
    wts = torch.cartesian_prod(*[w] * k).reshape(-1, k).prod(dim=1)
    return pts, wts


def _segment(alpha: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Where ``u(t) = alpha t + c > 0`` on [0, 1]: ``lo, hi`` and ``u(lo), u(hi)`` (``hi = lo`` when nowhere)."""
    safe = torch.where(alpha.abs() < 1e-12, torch.full_like(alpha, 1e-12), alpha)
    t0 = (-c / safe).clamp(0.0, 1.0)
    pos = alpha > 0
    lo = torch.where(pos, t0, torch.zeros_like(t0))
    hi = torch.where(pos, torch.ones_like(t0), t0)
    flat = alpha.abs() < 1e-12
    lo = torch.where(flat, torch.zeros_like(lo), lo)
    hi = torch.where(flat, (c > 0).to(c.dtype), hi)
    return lo, hi, alpha * lo + c, alpha * hi + c


def _relu_sq(alpha: Tensor, c: Tensor) -> Tensor:
    """``∫_0^1 ReLU(alpha t + c)² dt`` in closed form (no division by alpha)."""
    lo, hi, ul, uh = _segment(alpha, c)
    return (hi - lo) * (uh * uh + uh * ul + ul * ul) / 3


def _t_relu(alpha: Tensor, c: Tensor) -> Tensor:
    """``∫_0^1 t ReLU(alpha t + c) dt`` in closed form."""
    lo, hi, _, _ = _segment(alpha, c)
    return alpha * (hi ** 3 - lo ** 3) / 3 + c * (hi ** 2 - lo ** 2) / 2


def expected_loss(W: Tensor, b: Tensor, importance: Tensor, p: Tensor, *, nodes: int = 24,
                  dtype: torch.dtype = torch.float64) -> Tensor:
    """The exact expected loss of ReLU-output toy models ``[instances]`` (see the module docstring).

    ``W [instances, n, m]``, ``b [instances, n]``, ``importance`` and ``p`` broadcastable to ``[instances, n]``.
    Differentiable in ``W`` and ``b``; computed in ``dtype`` (float64 by default; the search uses float32).
    """
    if W.dim() != 3 or b.shape != W.shape[:2]:
        raise MechscopeError(f"expected W [instances, n, m] and b [instances, n]; got {tuple(W.shape)} and "
                             f"{tuple(b.shape)}.")
    n = W.shape[1]
    if n > 4:
        raise MechscopeError(f"expected_loss sums 2^n patterns with nodes^(n-1) points each: n <= 4, got n={n}.")
    W, b = W.to(dtype), b.to(dtype)
    imp = torch.as_tensor(importance).to(dtype).expand(b.shape)
    p = torch.as_tensor(p).to(dtype).expand(b.shape)
    Mx = W @ W.transpose(1, 2)                                                   # [I, n, n]
    total = torch.zeros_like(b)                                                  # [I, n] per output feature
    for S in itertools.product((0, 1), repeat=n):
        present = [j for j in range(n) if S[j]]
        prob = torch.ones_like(b[:, 0])
        for j in range(n):
            prob = prob * (p[:, j] if S[j] else 1 - p[:, j])
        for i in range(n):
            if not present:
                term = torch.relu(b[:, i]) ** 2
            else:
                t = i if S[i] else present[0]
                rest = [j for j in present if j != t]
                pts, wts = (a.to(dtype) for a in _grid(len(rest), nodes))
                c = b[:, i, None] + (pts @ Mx[:, rest, i].transpose(0, 1)).transpose(0, 1) if rest else \
                    b[:, i, None].expand(-1, 1)                                  # [I, Q]
                alpha = Mx[:, t, i, None].expand_as(c)
                inner = _relu_sq(alpha, c)
                if S[i]:
                    inner = inner - 2 * _t_relu(alpha, c) + 1.0 / 3
                term = inner @ wts
            total[:, i] = total[:, i] + prob * term
    return (total * imp).mean(dim=1)


def candidates(n: int, m: int) -> list[tuple[Tensor, Tensor]]:
    """Named solutions ``(W [n, m], b [n])`` that seed the search: for n=2/m=1 one feature kept (each), the
    antipodal pair, the asymmetric pair ``[0.93, -0.47]``; for n=3/m=2 two features orthogonal (each pair), one
    antipodal pair plus a dedicated feature (each), the triangle.  Empty for other shapes."""
    out: list[tuple[list, list]] = []
    if (n, m) == (2, 1):
        out = [([[1.0], [0.0]], [0.0, 0.2]), ([[0.0], [1.0]], [0.2, 0.0]), ([[1.0], [-1.0]], [0.0, 0.0]),
               ([[0.93], [-0.47]], [0.0, 0.0]), ([[-0.47], [0.93]], [0.0, 0.0])]
    elif (n, m) == (3, 2):
        for drop in range(3):
            W = [[0.0, 0.0] for _ in range(3)]
            keep = [j for j in range(3) if j != drop]
            W[keep[0]], W[keep[1]] = [1.0, 0.0], [0.0, 1.0]
            out.append((W, [0.2 if j == drop else 0.0 for j in range(3)]))
            W = [[0.0, 0.0] for _ in range(3)]
            W[keep[0]], W[keep[1]], W[drop] = [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]
            out.append((W, [0.0, 0.0, 0.0]))
        ang = torch.arange(3) * 2 * torch.pi / 3
        out.append((torch.stack([ang.cos(), ang.sin()], 1).tolist(), [0.0, 0.0, 0.0]))
    return [(torch.tensor(W), torch.tensor(b)) for W, b in out]


@dataclass(frozen=True)
class OptimalSolutions:
    """The best solution found per setting: ``W [settings, n, m]``, ``b [settings, n]``, ``loss [settings]``
    (the exact expected loss, 24 nodes), and ``start_losses [settings, starts]`` (each start's final loss at the
    search's quadrature)."""

    W: Tensor
    b: Tensor
    loss: Tensor
    start_losses: Tensor


def optimal_solutions(n: int, m: int, importance: Tensor, p: Tensor, starts: int = 16, *, steps: int = 300,
                      lr: float = 0.03, seed: int = 0, nodes: int = 12) -> OptimalSolutions:
    """Minimise the exact expected loss for every setting (``importance``, ``p``: ``[settings, n]``) at once:
    ``starts`` random starts (W normal with std 0.7, b 0) plus every named ``candidates(n, m)``, Adam with the
    learning rate halved at 50%, 75% and 90% of ``steps`` on the float32 loss with ``nodes`` quadrature nodes
    (12: within ~3e-5 of exact, enough to find the minimum); every start's final loss evaluated in float64 with
    the same nodes (``start_losses``), the lowest kept per setting and its ``loss`` evaluated with 24 nodes (~1e-6).

    >>> sol = optimal_solutions(2, 1, torch.ones(1, 2), torch.full((1, 2), 0.05), starts=2, steps=200)
    >>> classify_2_1(sol.W), sol.start_losses.shape
    (['superposition'], torch.Size([1, 7]))
    """
    importance = torch.as_tensor(importance, dtype=torch.float64)
    p = torch.as_tensor(p, dtype=torch.float64)
    if importance.dim() != 2 or importance.shape != p.shape or importance.shape[1] != n:
        raise MechscopeError(f"importance and p must both be [settings, {n}]; got {tuple(importance.shape)} and "
                             f"{tuple(p.shape)}.")
    if starts < 0 or steps < 0:
        raise MechscopeError(f"starts and steps must be >= 0, got {starts} and {steps}.")
    S = importance.shape[0]
    g = torch.Generator().manual_seed(seed)
    named = candidates(n, m)
    K = starts + len(named)
    if K == 0:
        raise MechscopeError("optimal_solutions needs at least one start.")
    W0 = torch.randn(K, S, n, m, generator=g, dtype=torch.float64) * 0.7
    b0 = torch.zeros(K, S, n, dtype=torch.float64)
    for k, (Wc, bc) in enumerate(named):
        W0[starts + k] = Wc.double()
        b0[starts + k] = bc.double()
    W = W0.reshape(K * S, n, m).float().requires_grad_(True)
    b = b0.reshape(K * S, n).float().requires_grad_(True)
    imp, pp = importance.repeat(K, 1), p.repeat(K, 1)
    opt = torch.optim.Adam([W, b], lr=lr)
    for step in range(steps):
        if step in (steps // 2, 3 * steps // 4, 9 * steps // 10):
            for group in opt.param_groups:
                group["lr"] /= 2
        opt.zero_grad()
        expected_loss(W, b, imp, pp, nodes=nodes, dtype=torch.float32).sum().backward()
        opt.step()
    with torch.no_grad():
        final = expected_loss(W, b, imp, pp, nodes=nodes).view(K, S)
        index = final.argmin(dim=0) * S + torch.arange(S)
        loss = expected_loss(W[index], b[index], importance, p)
    return OptimalSolutions(W.detach()[index], b.detach()[index], loss, final.T.contiguous())


def classify_2_1(W: Tensor) -> list[str]:
    """n=2, m=1 solutions ``W [instances, 2, 1]``: which features the single dimension holds (|w| > 0.5) and how
    (``PHASES_2_1``)."""
    out = []
    for w in W[:, :, 0]:
        big = w.abs() > 0.5
        if bool(big.all()):
            out.append("superposition" if float(w[0] * w[1]) < 0 else "both, same side")
        elif bool(big[0]):
            out.append("feature 1 only")
        elif bool(big[1]):
            out.append("feature 2 only")
        else:
            out.append("neither")
    return out


def classify_extra(W: Tensor, *, norm: float = 0.5, interference: float = 0.1) -> list[str]:
    """The phase of the last ("extra") feature of ``W [instances, n, m]`` as the paper's diagrams colour it
    (``EXTRA_PHASES``): not represented (``‖W_n‖ <= norm``), a dedicated dimension (represented, interference
    ``Σ_{j≠n} (Ŵ_n · W_j)² <= interference``), or superposition."""
    norms, inter = M.feature_norms(W)[:, -1], M.interference(W)[:, -1]
    return [EXTRA_PHASES[0] if float(a) <= norm else EXTRA_PHASES[2] if float(c) > interference else EXTRA_PHASES[1]
            for a, c in zip(norms, inter)]


def restricted_2_1(importance: Tensor, p: Tensor) -> list[str]:
    """The paper's analytic n=2/m=1 diagram: the cheapest of three fixed solutions, ``[1, 0]`` with the best bias
    for feature 2 (loss ``I_2 (p/3 - p²/4) / 2``), ``[0, 1]`` likewise, and the antipodal pair ``[1, -1]`` without
    bias (``(I_1 + I_2) p² / 12``).  ``importance [settings, 2]``, ``p [settings]`` (both features' density).
    At equal importance the pair wins below ``p = 4/7``.

    >>> restricted_2_1(torch.ones(2, 2), torch.tensor([0.5, 0.6]))
    ['superposition', 'feature 1 only']
    """
    imp, p = torch.as_tensor(importance, dtype=torch.float64), torch.as_tensor(p, dtype=torch.float64)
    keep = p / 3 - p ** 2 / 4
    losses = torch.stack([imp[:, 1] * keep / 2, imp[:, 0] * keep / 2, (imp[:, 0] + imp[:, 1]) * p ** 2 / 12], 1)
    names = ("feature 1 only", "feature 2 only", "superposition")
    return [names[int(i)] for i in losses.argmin(dim=1)]


def _canonical(label: str, symmetric: bool) -> str:
    return "one feature" if symmetric and label in ("feature 1 only", "feature 2 only") else label


def agreement(a: list[str], b: list[str], symmetric: list[bool] | None = None) -> float:
    """The fraction of cells where two phase maps name the same phase; in ``symmetric`` cells (equal importance,
    where which of two interchangeable features is kept is a coin toss) "feature 1 only" and "feature 2 only"
    count as one phase.

    >>> agreement(["feature 1 only", "superposition"], ["feature 2 only", "superposition"], [True, True])
    1.0
    """
    if len(a) != len(b) or not a:
        raise MechscopeError(f"agreement needs two non-empty maps of one length, got {len(a)} and {len(b)} cells.")
    sym = symmetric or [False] * len(a)
    return sum(_canonical(x, s) == _canonical(y, s) for x, y, s in zip(a, b, sym)) / len(a)


def shuffled_agreement(a: list[str], b: list[str], symmetric: list[bool] | None = None, *, shuffles: int = 1000,
                       seed: int = 0) -> Tensor:
    """The control for ``agreement(a, b)``: the agreement of ``b`` with ``a``'s cells shuffled over the grid (same
    phases, same proportions, no place), ``shuffles`` times; ``[shuffles]``."""
    g = torch.Generator().manual_seed(seed)
    return torch.tensor([agreement([a[int(j)] for j in torch.randperm(len(a), generator=g)], b, symmetric)
                         for _ in range(shuffles)])


def transition(densities: list[float], phases: list[str], phase: str = "superposition") -> dict:
    """Along a density sweep (ascending): the highest density still in ``phase``, the lowest density out of it,
    and their midpoint (``None`` where either is missing); ``clean`` when every density in ``phase`` lies below
    every density out of it."""
    inside = [d for d, x in zip(densities, phases) if x == phase]
    outside = [d for d, x in zip(densities, phases) if x != phase]
    hi, lo = (max(inside) if inside else None), (min(outside) if outside else None)
    mid = round((hi + lo) / 2, 4) if hi is not None and lo is not None else None
    return {"highest_density_in_superposition": hi, "lowest_density_without": lo, "midpoint": mid,
            "clean": hi is not None and lo is not None and hi < lo}


def plot_phase_maps(maps: dict[str, list[str]], kinds: tuple[str, ...], densities: Tensor, relative: Tensor, *,
                    ylabel: str, title: str = "", symmetric: list[bool] | None = None, vline: float | None = None):
    """Phase maps side by side (``maps``: panel title -> phases of the ``[len(relative), len(densities)]`` grid,
    row-major), and a last panel marking the cells where the first two maps disagree."""
    from matplotlib.figure import Figure

    names = list(maps)
    fig = Figure(figsize=(3.4 * (len(names) + 1), 3.2))
    x, y = densities.numpy(), relative.numpy()
    shape = (len(relative), len(densities))
    for col, name in enumerate(names):
        ax = fig.add_subplot(1, len(names) + 1, col + 1)
        grid = np.array([kinds.index(v) for v in maps[name]]).reshape(shape)
        image = ax.pcolormesh(x, y, grid, cmap="viridis", vmin=0, vmax=len(kinds) - 1, shading="nearest")
        ax.set_title(name, fontsize=8)
        if vline is not None:
            ax.axvline(vline, c="w", ls="--", lw=0.8)
    cbar = fig.colorbar(image, ax=fig.axes[-1], ticks=range(len(kinds)))
    cbar.ax.set_yticklabels(kinds, fontsize=6)
    a, b = maps[names[0]], maps[names[1]]
    sym = symmetric or [False] * len(a)
    diff = np.array([_canonical(u, s) != _canonical(v, s) for u, v, s in zip(a, b, sym)], dtype=float)
    ax = fig.add_subplot(1, len(names) + 1, len(names) + 1)
    ax.pcolormesh(x, y, diff.reshape(shape), cmap="Reds", vmin=0, vmax=1, shading="nearest")
    ax.set_title(f"{names[0]} != {names[1]}: {int(diff.sum())} of {len(a)}", fontsize=8)
    for ax in fig.axes[: len(names)] + fig.axes[-1:]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("feature density 1 - S", fontsize=7)
    fig.axes[0].set_ylabel(ylabel, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
