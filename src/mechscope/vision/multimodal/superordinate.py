"""Superordinate-concept units: units that respond to every member of a group of shapes (round, pointed,
linear) more than to any shape outside it.

The paper (Goh et al. 2021) found CLIP units for categories above the level of single objects, roughly following
a hierarchy.  Here the groups are ``data.concepts.GROUPS``.  ``superordinate_units(table, concepts, margin)``
reads a per-concept table of one modality (``modality_table(...)[m]``: ``[C, U]`` in σ of the dataset) whose
concepts include the groups' member shapes, and computes per group ``g`` and unit ``u`` the *gap*

    ``gap[g, u] = min over members s of g of table[s, u]  -  max over shapes s' outside g of table[s', u]``

(non-members: the table's other member-able shapes, i.e. the shapes of the other groups).  A unit is a
superordinate unit of ``g`` when ``gap[g, u] >= margin``: its *weakest* response to a member beats its
*strongest* response to a non-member by ``margin`` σ.  Each unit is assigned its group of largest gap.

Example::

    >>> import torch
    >>> concepts = ["disc", "ring", "star", "cross"]
    >>> table = torch.tensor([[1.0, 0.0], [0.8, 0.0], [0.0, 0.0], [0.1, 2.0]])   # [C=4, U=2]; unit 1: cross only
    >>> s = superordinate_units(table, concepts, {"round": ("disc", "ring"), "pointed": ("star", "cross")}, 0.5)
    >>> s.superordinate.tolist(), s.group_names(), [round(v, 2) for v in s.best_gap.tolist()]
    ([True, False], ['round', 'pointed'], [0.7, 0.0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mechscope.data.concepts import GROUPS
from mechscope.errors import MechscopeError


@dataclass(frozen=True)
class SuperordinateUnits:
    """``gap [G, U]`` (σ; see the module docstring), ``group [U]`` (index into ``groups`` of each unit's largest
    gap), ``best_gap [U]``, ``superordinate [U]`` (``best_gap >= threshold``)."""

    groups: tuple[str, ...]
    threshold: float
    gap: torch.Tensor
    group: torch.Tensor
    best_gap: torch.Tensor
    superordinate: torch.Tensor

    @property
    def count(self) -> int:
        """How many units are superordinate units (of any group)."""
        return int(self.superordinate.sum())

    def per_group(self) -> dict[str, int]:
        """How many superordinate units each group has."""
        return {g: int((self.superordinate & (self.group == i)).sum()) for i, g in enumerate(self.groups)}

    def group_names(self) -> list[str]:
        """Each unit's best group, by name."""
        return [self.groups[int(i)] for i in self.group]

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per unit: ``unit``, ``group``, ``gap`` (σ), ``superordinate``."""
        return [{"unit": u, "group": self.groups[int(self.group[u])], "gap": float(self.best_gap[u]),
                 "superordinate": bool(self.superordinate[u])} for u in range(self.gap.shape[1])]


def superordinate_units(table: torch.Tensor, concepts: Sequence[str],
                        groups: Mapping[str, Sequence[str]] = GROUPS, margin: float = 0.25) -> SuperordinateUnits:
    """The superordinate test of every unit of a one-modality concept table ``[C, U]`` (rows named by
    ``concepts``).  Every member of every group must be a row; NaN rows (empty cells) are refused."""
    t = torch.as_tensor(table).detach().double().cpu()
    if t.dim() != 2 or t.shape[0] != len(concepts):
        raise MechscopeError(f"table must be [C, U] with one row per concept ({len(concepts)}), got {tuple(t.shape)}")
    if len(groups) < 2:
        raise MechscopeError(f"the test needs at least 2 groups (members and non-members), got {list(groups)}")
    index = {c: i for i, c in enumerate(concepts)}
    rows = {}
    for g, members in groups.items():
        missing = [s for s in members if s not in index]
        if missing or not members:
            raise MechscopeError(f"group {g!r}: members {missing or '(none)'} have no row; the table's concepts are "
                                 f"{list(concepts)}")
        rows[g] = [index[s] for s in members]
    every = sorted({i for r in rows.values() for i in r})
    if torch.isnan(t[every]).any():
        raise MechscopeError("the table has NaN (empty) cells for group members; use a modality that shows shapes")
    gaps = []
    for g, r in rows.items():
        outside = [i for i in every if i not in r]
        gaps.append(t[r].min(0).values - t[outside].max(0).values)
    gap = torch.stack(gaps)
    best = gap.max(0)
    return SuperordinateUnits(tuple(groups), float(margin), gap.float(), best.indices, best.values.float(),
                              best.values >= margin)
