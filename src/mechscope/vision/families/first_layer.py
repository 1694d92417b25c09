"""What a first layer's RGB kernels are made of, and whether branches that read it split colour from
black-and-white (Branch Specialization's first-layer experiment).

* ``kernel_colour_scores(weight)``: per first-layer unit, the share of its kernel's energy outside the grey
  (luminance) direction ``(1,1,1)/√3`` of each pixel — 0 for a kernel that weighs R, G and B alike (a
  black-and-white unit), up to 1 for a colour-opponent one (e.g. red minus green, ``(1,-1,0)``).  The same
  definition as ``branches.first_layer_svd``'s per-component colour score, applied to units.
* ``branch_colour_split(weight, groups)``: the units cut into ``groups`` contiguous equal branches (as a grouped
  convolution reads them); per branch the mean colour score; the **split** = most minus least colourful
  branch; and a **permutation control**: the same split for ``draws`` random partitions of the same units into
  branches of the same sizes (``percentile``: the share of random partitions whose split is strictly lower).
* ``svd_order(svd, top)``: whether a ``FirstLayerSVD`` puts colour first and frequency second among its ``top``
  components: component 1 has the largest colour score of the top ``top``, and component 2 the largest
  frequency score of components 2..``top``.

Example::

    >>> import torch
    >>> grey = torch.ones(4, 3, 5, 5)                       # four black-and-white units
    >>> opp = torch.zeros(4, 3, 5, 5); opp[:, 0], opp[:, 1] = 1.0, -1.0   # four red-green units
    >>> kernel_colour_scores(torch.cat([grey, opp])).tolist()
    [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    >>> s = branch_colour_split(torch.cat([grey, opp]), 2, draws=200)
    >>> s.branch_means, s.split, s.percentile > 0.95
    ([0.0, 1.0], 1.0, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mechscope.errors import MechscopeError
from mechscope.vision.families.branches import FirstLayerSVD

__all__ = ["kernel_colour_scores", "branch_colour_split", "BranchColourSplit", "svd_order", "SVDOrder"]


def _kernels(weight: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(weight).detach().to(torch.float64).cpu()
    if w.dim() != 4 or w.shape[1] != 3:
        raise MechscopeError(f"first-layer weights must be RGB kernels [C_out, 3, kh, kw], got shape {tuple(w.shape)}")
    return w


def kernel_colour_scores(weight: torch.Tensor) -> torch.Tensor:
    """``weight [C, 3, kh, kw]`` -> ``[C]`` float64 in ``[0, 1]``: each kernel's share of energy orthogonal to
    the grey direction (0 for an all-zero kernel)."""
    w = _kernels(weight)
    total = (w ** 2).sum((1, 2, 3))
    grey = (w.sum(1) ** 2).sum((1, 2)) / 3.0
    score = torch.where(total > 0, 1.0 - grey / total.clamp_min(1e-300), torch.zeros_like(total))
    return score.clamp(0.0, 1.0)


@dataclass(frozen=True)
class BranchColourSplit:
    """Colour scores by branch: ``scores [C]`` (per unit), ``branch_means`` (per branch, in channel order),
    ``split`` (max − min of the branch means), ``null_splits [draws]`` (the split of each random partition),
    ``percentile`` (share of ``null_splits`` strictly below ``split``)."""

    groups: int
    scores: torch.Tensor
    branch_means: list[float]
    split: float
    null_splits: torch.Tensor
    percentile: float

    def as_dict(self) -> dict:
        """JSON-ready (the null distribution summarised)."""
        null = self.null_splits
        return {"groups": self.groups, "branch_means": [round(m, 4) for m in self.branch_means],
                "split": round(self.split, 4), "percentile_vs_random_partitions": round(self.percentile, 4),
                "random_partitions": {"draws": int(null.numel()),
                                      "mean": round(float(null.mean()), 4) if null.numel() else None,
                                      "p95": round(float(null.quantile(0.95)), 4) if null.numel() else None},
                "unit_scores": [round(float(s), 4) for s in self.scores]}


def _split(scores: torch.Tensor, groups: int) -> torch.Tensor:
    """``scores [..., C]`` -> ``[...]``: max − min over ``groups`` contiguous equal chunks of their means."""
    means = scores.reshape(*scores.shape[:-1], groups, -1).mean(-1)
    return means.amax(-1) - means.amin(-1)


def branch_colour_split(weight: torch.Tensor, groups: int, *, draws: int = 1000, seed: int = 0) -> BranchColourSplit:
    """Colour split between the ``groups`` branches of first-layer ``weight [C, 3, kh, kw]`` (branch ``g`` =
    channels ``g*C/groups … (g+1)*C/groups - 1``), against ``draws`` random equal-size partitions (seeded)."""
    scores = kernel_colour_scores(weight)
    c = scores.numel()
    if groups < 2 or c % groups:
        raise MechscopeError(f"need at least 2 branches that divide the {c} units evenly, got groups={groups}")
    if draws < 0:
        raise MechscopeError(f"draws must be >= 0, got {draws}")
    means = scores.reshape(groups, -1).mean(1)
    split = float(means.max() - means.min())
    gen = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(c, generator=gen) for _ in range(draws)]) if draws else \
        torch.empty(0, c, dtype=torch.long)
    null = _split(scores[perms], groups) if draws else torch.empty(0, dtype=torch.float64)
    percentile = float((null < split).double().mean()) if draws else float("nan")
    return BranchColourSplit(groups, scores, [float(m) for m in means], split, null, percentile)


@dataclass(frozen=True)
class SVDOrder:
    """``colour_first``: component 1 has the top colour score of the first ``top``; ``frequency_second``:
    component 2 has the top frequency score of components 2..``top``; ``holds``: both."""

    top: int
    colour: list[float]
    frequency: list[float]
    explained: list[float]
    colour_first: bool
    frequency_second: bool

    @property
    def holds(self) -> bool:
        return self.colour_first and self.frequency_second

    def as_dict(self) -> dict:
        """JSON-ready."""
        return {"top": self.top, "colour": [round(x, 4) for x in self.colour],
                "frequency": [round(x, 4) for x in self.frequency],
                "explained": [round(x, 4) for x in self.explained],
                "colour_first": self.colour_first, "frequency_second": self.frequency_second, "holds": self.holds}


def svd_order(svd: FirstLayerSVD, top: int = 4) -> SVDOrder:
    """Colour-first, frequency-second test on the first ``top`` (>= 2) components of ``svd``."""
    if top < 2 or top > len(svd.colour):
        raise MechscopeError(f"top must be between 2 and {len(svd.colour)} components, got {top}")
    colour, freq = list(svd.colour[:top]), list(svd.frequency[:top])
    colour_first = max(range(top), key=lambda i: colour[i]) == 0
    frequency_second = max(range(1, top), key=lambda i: freq[i]) == 1
    return SVDOrder(top, colour, freq, [float(x) for x in svd.explained[:top]], colour_first, frequency_second)
