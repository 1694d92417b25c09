"""Families of units across models: universality by activation correlation.

``activation_correlation`` (``activation_correlations`` for several layers in one pass) streams a dataset through two models and accumulates, for every pair of units
``(a, b)`` of ``layer_a`` in model A and ``layer_b`` in model B, the Pearson correlation of their activations:
over every spatial position when the two maps have the same size (the same architecture, e.g. two seeds),
else over images of the spatially averaged activations.  ``universality`` matches each unit of A to its most
correlated unit of B and reports the share of units whose best match reaches ``threshold`` — the Circuits
thread's test of whether two networks learn the same features.  Judge it against two *untrained* networks of
the same architecture: early layers of random nets match well too (flat colour regions drive every unit alike).

``tuning_match`` matches at the level of a family: units of A (e.g. curve detectors) to units of B by the shape
of their tuning curves over orientation (``[units, orientations]``, e.g. ``RadialTuning.responses``), with the
difference of their preferred orientations.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from mechscope.vision.families.universality import activation_correlation, universality
    >>> a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    >>> b = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    >>> with torch.no_grad():
    ...     _ = b[0].weight.copy_(2 * a[0].weight.flip(0)), b[0].bias.copy_(2 * a[0].bias.flip(0))
    >>> corr = activation_correlation(a, b, "0", "0", [torch.rand(8, 3, 8, 8)], progress=False)
    >>> result = universality(corr, threshold=0.99)
    >>> result.best_match.tolist(), result.share
    ([3, 2, 1, 0], 1.0)
    >>> angles = torch.arange(0.0, 360.0, 30.0)
    >>> bumps = torch.stack([torch.cos(torch.deg2rad(angles - p)).clamp_min(0) for p in (0.0, 90.0, 180.0)])
    >>> m = tuning_match(bumps[[1, 2]], bumps, angles)
    >>> m.best_match.tolist(), m.orientation_diff.tolist(), m.share(min_corr=0.9, max_diff=15.0)
    ([1, 2], [0.0, 0.0], 1.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from mechscope.capture import as_map, capture
from mechscope.errors import MechscopeError
from mechscope.units import parse, validate


def _images(item: Any) -> torch.Tensor:
    if isinstance(item, torch.Tensor):
        return item
    if isinstance(item, (tuple, list)) and len(item) >= 2 and isinstance(item[1], torch.Tensor):
        return item[1]  # (indices, images) as ImageFolder.batches / ShapesDataset.batches yield
    raise MechscopeError("batches must yield image tensors [B, 3, H, W] or (indices, images) pairs")


class CrossCorrelation:
    """Streaming Pearson correlations between two sets of variables: ``add(a [A, samples], b [B, samples])``
    accumulates float64 sums batch by batch; ``result(what)`` is ``[A, B]`` (0 where either side is constant)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = a.double(), b.double()
        for key, value in (("a", a.sum(1)), ("b", b.sum(1)), ("aa", (a * a).sum(1)), ("bb", (b * b).sum(1)),
                           ("ab", a @ b.T)):
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.n += a.shape[1]

    def result(self, what: str = "correlations") -> torch.Tensor:
        n, s = self.n, self.sums
        if n < 2:
            raise MechscopeError(f"{what} needs at least two samples")
        mean_a, mean_b = s["a"] / n, s["b"] / n
        cov = s["ab"] / n - mean_a[:, None] * mean_b[None]
        std_a = (s["aa"] / n - mean_a**2).clamp_min(0).sqrt()
        std_b = (s["bb"] / n - mean_b**2).clamp_min(0).sqrt()
        corr = cov / (std_a[:, None] * std_b[None]).clamp_min(1e-12)
        return corr.masked_fill((std_a[:, None] == 0) | (std_b[None] == 0), 0.0)


def activation_correlation(model_a: nn.Module, model_b: nn.Module, layer_a: str, layer_b: str,
                           batches: Iterable[Any], *, progress: bool = True) -> torch.Tensor:
    """Pearson correlations ``[C_a, C_b]`` between the units of ``layer_a`` (model A) and ``layer_b`` (model B)
    over ``batches`` (image tensors or ``(indices, images)``); float64 sums, so any dataset size streams."""
    return activation_correlations(model_a, model_b, [(layer_a, layer_b)], batches, progress=progress)[
        (layer_a, layer_b)]


@torch.no_grad()
def activation_correlations(model_a: nn.Module, model_b: nn.Module, pairs: Sequence[tuple[str, str]],
                            batches: Iterable[Any], *, progress: bool = True) -> dict[tuple[str, str], torch.Tensor]:
    """``activation_correlation`` for several ``(layer_a, layer_b)`` pairs in one pass over ``batches`` (each
    model runs once per batch): ``{pair: [C_a, C_b]}``."""
    if not pairs:
        raise MechscopeError("activation_correlations needs at least one (layer_a, layer_b) pair")
    names = {pair: (parse(pair[0]).layer, parse(pair[1]).layer) for pair in pairs}
    for name_a, name_b in names.values():
        validate(model_a, name_a)
        validate(model_b, name_b)
    wanted_a = list(dict.fromkeys(n for n, _ in names.values()))
    wanted_b = list(dict.fromkeys(n for _, n in names.values()))
    modes = (model_a.training, model_b.training)
    model_a.eval()
    model_b.eval()
    accs = {pair: CrossCorrelation() for pair in pairs}
    try:
        for item in tqdm(batches, desc="correlation", disable=not progress):
            x = _images(item)
            got_a, got_b = capture(model_a, x, wanted_a), capture(model_b, x, wanted_b)
            for pair, (name_a, name_b) in names.items():
                a = as_map(got_a[name_a], name_a, "correlations").double()
                b = as_map(got_b[name_b], name_b, "correlations").double()
                if a.shape[-2:] != b.shape[-2:]:
                    a, b = a.mean((2, 3), keepdim=True), b.mean((2, 3), keepdim=True)
                accs[pair].add(a.permute(1, 0, 2, 3).reshape(a.shape[1], -1),   # [C_a, samples]
                               b.permute(1, 0, 2, 3).reshape(b.shape[1], -1))
    finally:
        model_a.train(modes[0])
        model_b.train(modes[1])
    return {pair: acc.result("activation_correlation").float() for pair, acc in accs.items()}


@dataclass(frozen=True)
class Universality:
    """For every unit of A: ``best_match [C_a]`` (a unit of B) and ``best_corr [C_a]``; ``share`` of units with
    ``best_corr >= threshold``."""

    best_match: torch.Tensor
    best_corr: torch.Tensor
    threshold: float

    @property
    def share(self) -> float:
        return float((self.best_corr >= self.threshold).float().mean())


def universality(corr: torch.Tensor, threshold: float = 0.8) -> Universality:
    """Match each unit of A (rows of ``corr [C_a, C_b]``) to its most correlated unit of B."""
    best, match = corr.max(1)
    return Universality(match, best, threshold)


@dataclass(frozen=True)
class TuningMatch:
    """For every unit of A: ``best_match [A]`` (a row of B), ``best_corr [A]`` (Pearson correlation of the two
    tuning curves over orientation) and ``orientation_diff [A]`` (degrees in ``[0, 180]`` between their preferred
    orientations, the argmax of each curve)."""

    best_match: torch.Tensor
    best_corr: torch.Tensor
    orientation_diff: torch.Tensor

    def share(self, min_corr: float = 0.8, max_diff: float = 22.5) -> float:
        """Share of A's units whose match has ``best_corr >= min_corr`` and ``orientation_diff <= max_diff``
        (0.0 when A is empty)."""
        if self.best_corr.numel() == 0:
            return 0.0
        ok = (self.best_corr >= min_corr) & (self.orientation_diff <= max_diff)
        return float(ok.float().mean())


def tuning_match(curves_a: torch.Tensor, curves_b: torch.Tensor, orientations: torch.Tensor) -> TuningMatch:
    """Match each tuning curve of ``curves_a [A, O]`` to the most correlated of ``curves_b [B, O]`` (Pearson over
    the ``O`` orientations, degrees ``[O]``; a flat curve correlates 0).  ``A`` may be 0; ``B`` must not."""
    if curves_a.dim() != 2 or curves_b.dim() != 2 or orientations.dim() != 1 or not (
            curves_a.shape[1] == curves_b.shape[1] == orientations.shape[0]):
        raise MechscopeError(f"tuning curves must be [A, O] and [B, O] over orientations [O]; got "
                             f"{tuple(curves_a.shape)}, {tuple(curves_b.shape)}, {tuple(orientations.shape)}")
    if curves_b.shape[0] == 0:
        raise MechscopeError("tuning_match needs at least one curve in B")
    acc = CrossCorrelation()
    acc.add(curves_a, curves_b)
    best, match = acc.result("tuning_match").float().max(1) if curves_a.shape[0] else (
        torch.zeros(0), torch.zeros(0, dtype=torch.long))
    pref_a = orientations[curves_a.argmax(1)] if curves_a.shape[0] else torch.zeros(0)
    pref_b = orientations[curves_b.argmax(1)][match]
    diff = (pref_a - pref_b).remainder(360.0)
    return TuningMatch(match, best, torch.minimum(diff, 360.0 - diff))
