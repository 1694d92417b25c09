"""Per-modality concept responses of units, in σ of the dataset, and the multimodal-unit test.

``modality_table(acts, concept, modality, n_concepts, n_modalities)`` averages each unit's response over the
items of every (modality, concept) cell and expresses it in standard deviations of the unit's response over the
whole dataset: ``(mean_cell - mu_u) / sigma_u``, shape ``[M, C, U]``.  ``multimodal_units(table, (p, w), margin)``
applies the paper's criterion ("Multimodal Neurons in Artificial Neural Networks", Goh et al. 2021): a unit is
multimodal when its strongest concept is the same in modality ``p`` (e.g. pictures) and in modality ``w`` (e.g.
written words), and that concept beats the unit's runner-up concept by at least ``margin`` σ in both.  Controls
(an untrained network, one trained on shuffled captions) are the same two calls on other activations.

Example::

    >>> import torch
    >>> acts = torch.tensor([[2.0], [0.0], [2.0], [0.0]])          # 4 items, 1 unit
    >>> concept, modality = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1])
    >>> t = modality_table(acts, concept, modality, n_concepts=2, n_modalities=2)
    >>> t.shape, t[:, :, 0].tolist()
    (torch.Size([2, 2, 1]), [[1.0, -1.0], [1.0, -1.0]])
    >>> m = multimodal_units(t, modalities=(0, 1), margin=1.0)
    >>> m.multimodal.tolist(), m.concept.tolist(), m.margin.tolist()
    ([True], [[0], [0]], [[2.0], [2.0]])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mechscope.errors import MechscopeError


def _units_matrix(acts: torch.Tensor) -> torch.Tensor:
    """``[N, U]`` or ``[N, U, *positions]`` (averaged over positions) -> float64 ``[N, U]``."""
    a = torch.as_tensor(acts)
    if a.dim() < 2:
        raise MechscopeError(f"acts must be [N, U] (or [N, U, H, W]), got shape {tuple(a.shape)}")
    a = a.detach().double().cpu()
    return a.flatten(2).mean(2) if a.dim() > 2 else a


def _labels(values: Any, n: int, count: int, what: str) -> torch.Tensor:
    """Integer labels ``[n]`` in ``0..count-1``; anything else is refused with what is valid."""
    t = torch.as_tensor(values)
    if t.dim() != 1 or t.shape[0] != n:
        raise MechscopeError(f"{what} must be a 1-D tensor of {n} labels (one per item), got shape {tuple(t.shape)}")
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise MechscopeError(f"{what} labels must be integers 0..{count - 1}")
    t = t.long()
    if n and (t.min() < 0 or t.max() >= count):
        raise MechscopeError(f"{what} labels must lie in 0..{count - 1}, found {int(t.min())}..{int(t.max())}")
    return t


def _dataset_stats(stats: Any, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu [U], sigma [U])`` from ``stats`` (a ``(mean, std)`` pair, a ``[2, U]`` tensor, or an object with
    ``.mean``/``.std`` arrays, e.g. ``vision.evidence.stats.UnitStats``) or from ``a`` itself (population std)."""
    if stats is None:
        return a.mean(0), a.std(0, unbiased=False)
    u = a.shape[1]
    if isinstance(stats, (torch.Tensor, np.ndarray)):              # a [2, U] tensor: row 0 mean, row 1 std
        if tuple(stats.shape) != (2, u):
            raise MechscopeError(f"a stats tensor must be [2, {u}] (row 0 mean, row 1 std per unit), got "
                                 f"{tuple(stats.shape)}")
        mean, std = stats[0], stats[1]
    elif hasattr(stats, "mean") and hasattr(stats, "std"):          # UnitStats (arrays, not methods)
        mean, std = stats.mean, stats.std
    else:
        try:
            mean, std = stats
        except (TypeError, ValueError):
            raise MechscopeError("stats must be a (mean [U], std [U]) pair, a [2, U] tensor or an object with "
                                 f".mean and .std (UnitStats), got {type(stats).__name__}") from None
    mu, sigma = (torch.as_tensor(v, dtype=torch.float64).flatten().cpu() for v in (mean, std))
    if mu.shape != (u,) or sigma.shape != (u,):
        raise MechscopeError(f"stats must give a mean and a std per unit ([{u}] each), got {tuple(mu.shape)} and "
                             f"{tuple(sigma.shape)}")
    if (sigma < 0).any():
        raise MechscopeError("stats std must be non-negative")
    return mu, sigma


def modality_table(
    acts: torch.Tensor, concept: torch.Tensor, modality: torch.Tensor, n_concepts: int, n_modalities: int,
    stats: Any = None,
) -> torch.Tensor:
    """Each unit's mean response to every concept in every modality, in σ of the dataset.

    Args:
        acts: ``[N, U]`` unit activations per item (``[N, U, H, W]`` maps are averaged over positions first).
        concept: ``[N]`` concept index per item, in ``0..n_concepts-1``.
        modality: ``[N]`` modality index per item (e.g. 0 picture, 1 sketch, 2 word), in ``0..n_modalities-1``.
        stats: the dataset's per-unit statistics: a ``(mean [U], std [U])`` pair, a ``[2, U]`` tensor (row 0
            mean, row 1 std) or an object with ``.mean`` and ``.std`` arrays (``UnitStats``); default: mean and
            population std of ``acts``.

    Returns:
        ``[M, C, U]`` float32: ``(mean of the cell's items - mu_u) / sigma_u``; NaN for an empty cell; 0 for a unit
        with ``sigma_u == 0`` (a dead unit responds to nothing).
    """
    a = _units_matrix(acts)
    n = a.shape[0]
    if n_concepts < 1 or n_modalities < 1:
        raise MechscopeError(f"n_concepts and n_modalities must be positive, got {n_concepts} and {n_modalities}")
    c = _labels(concept, n, n_concepts, "concept")
    m = _labels(modality, n, n_modalities, "modality")
    mu, sigma = _dataset_stats(stats, a)
    cell = m * n_concepts + c
    sums = torch.zeros(n_modalities * n_concepts, a.shape[1], dtype=torch.float64).index_add_(0, cell, a)
    counts = torch.bincount(cell, minlength=n_modalities * n_concepts).double()[:, None]
    means = torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("nan")))
    z = torch.where(sigma > 0, (means - mu) / sigma.clamp_min(1e-300), torch.zeros_like(means))
    z = torch.where(counts > 0, z, torch.full_like(z, float("nan")))
    return z.reshape(n_modalities, n_concepts, -1).float()


@dataclass(frozen=True)
class MultimodalUnits:
    """The multimodal test of every unit, between two modalities ``modalities = (p, w)``.

    ``concept`` ``[2, U]``: the strongest concept of each unit in ``p`` (row 0) and ``w`` (row 1); ``response``
    ``[2, U]``: its σ; ``margin`` ``[2, U]``: its lead over the unit's runner-up concept in that modality, in σ;
    ``agree`` ``[U]``: the two strongest concepts are the same; ``multimodal`` ``[U]``: they agree and both margins
    are ``>= threshold`` (the ``margin`` argument).
    """

    modalities: tuple[int, int]
    threshold: float
    concept: torch.Tensor
    response: torch.Tensor
    margin: torch.Tensor
    agree: torch.Tensor
    multimodal: torch.Tensor

    @property
    def count(self) -> int:
        """How many units are multimodal."""
        return int(self.multimodal.sum())

    def units(self) -> list[int]:
        """The multimodal units' indices, ascending."""
        return self.multimodal.nonzero().flatten().tolist()

    def rows(self, concept_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One JSON-ready dict per unit (unit, concept per modality, σ, margins, agree, multimodal)."""
        def name(i: int) -> Any:
            return concept_names[i] if concept_names is not None else i

        return [{"unit": u, "concept": [name(int(self.concept[0, u])), name(int(self.concept[1, u]))],
                 "sigma": [float(self.response[0, u]), float(self.response[1, u])],
                 "margin": [float(self.margin[0, u]), float(self.margin[1, u])],
                 "agree": bool(self.agree[u]), "multimodal": bool(self.multimodal[u])}
                for u in range(self.multimodal.shape[0])]


def _modality_index(m: int | str, names: Sequence[str] | None, count: int) -> int:
    if isinstance(m, str):
        if names is None or m not in names:
            valid = list(names) if names else f"indices 0..{count - 1}"
            raise MechscopeError(f"unknown modality {m!r}; valid: {valid}")
        return list(names).index(m)
    if not 0 <= int(m) < count:
        raise MechscopeError(f"modality index {m} is outside 0..{count - 1} (the table has {count} modalities)")
    return int(m)


def multimodal_units(
    table: torch.Tensor, modalities: tuple[int | str, int | str] = (0, 1), margin: float = 1.0,
    modality_names: Sequence[str] | None = None,
) -> MultimodalUnits:
    """Which units are multimodal between two modalities of a ``modality_table`` ``[M, C, U]``.

    ``modalities``: two indices, or names when ``modality_names`` (``[M]``) is given, e.g. ``("picture", "word")``.
    Empty cells (NaN) never win.  A unit is multimodal when its strongest concept agrees across the two and leads
    its runner-up by ``>= margin`` σ in both.
    """
    t = torch.as_tensor(table).detach().double().cpu()
    if t.dim() != 3:
        raise MechscopeError(f"table must be [modalities, concepts, units] (modality_table's), got {tuple(t.shape)}")
    if t.shape[1] < 2:
        raise MechscopeError(f"a multimodal test needs at least 2 concepts, the table has {t.shape[1]}")
    if modality_names is not None and len(modality_names) != t.shape[0]:
        raise MechscopeError(f"modality_names has {len(modality_names)} names for {t.shape[0]} modalities")
    if len(modalities) != 2:
        raise MechscopeError(f"modalities must name exactly two modalities, got {modalities!r}")
    p, w = (_modality_index(m, modality_names, t.shape[0]) for m in modalities)
    if p == w:
        raise MechscopeError("the two modalities must differ")
    pair = torch.nan_to_num(t[[p, w]], nan=float("-inf"))          # [2, C, U]
    top = pair.topk(2, dim=1)
    best, second = top.values[:, 0], top.values[:, 1]              # [2, U]
    lead = torch.where(torch.isfinite(best) & torch.isfinite(second), best - second, torch.zeros_like(best))
    concept = top.indices[:, 0]
    agree = (concept[0] == concept[1]) & torch.isfinite(best).all(0)
    multi = agree & (lead >= margin).all(0)
    return MultimodalUnits((p, w), float(margin), concept, best.float(), lead.float(), agree, multi)
