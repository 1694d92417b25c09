"""Universality across architectures: compare the detector families of two networks at layers of comparable
scale, against the same comparison with the second network untrained.

Per network and layer, a census (``family_census``): how many units are curve detectors
(``tuning.curve_detectors`` on radial tuning curves), how many of 8 sectors of orientation their preferred
orientations cover, and the same for high-low frequency detectors (``detectors.classify_units`` with
``high_low_tuning``; a unit is counted once, curve first).  Between networks (``family_match``): each curve
detector of A is matched to the unit of B whose radial tuning curve correlates best with its own
(``universality.tuning_match``: Pearson over orientation); a detector is matched when that correlation is at least
``min_corr`` and the two preferred orientations differ by at most ``max_diff`` degrees.  The layers may have
different names, widths and architectures: only tuning curves to the same stimuli are compared, never
activations map to map.  ``compare_architectures`` does both for A, B and B's untrained twin (the control: an
untrained network's units also have tuning curves, and some of them correlate with anything).

Example (two untrained nets, a few orientations, to show the call)::

    >>> import mechscope
    >>> a = mechscope.load("shapes", weights="random", seed=0)
    >>> b = mechscope.load("shapes", weights="random", seed=1)
    >>> c = compare_architectures(a, "conv2d2", b, "conv2d2", b, n_orientations=8, high_low=False)
    >>> sorted(c.to_json())
    ['a', 'b', 'control', 'criteria', 'match', 'match_control']
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.families.detectors import HighLowTuning, classify_units, high_low_tuning
from mechscope.vision.families.tuning import RadialTuning, curve_detectors, orientation_coverage, radial_tuning_curve
from mechscope.vision.families.universality import tuning_match


@dataclass(frozen=True)
class FamilyMatch:
    """A's curve detectors (``units``, channels of A's layer) matched into B: ``best_match`` (channels of B),
    ``best_corr`` and ``orientation_diff`` (degrees) per detector, ``matched`` (meets the criteria) and
    ``match_is_curve_detector`` (the matched unit of B is one of B's own curve detectors)."""

    units: list[int]
    best_match: list[int]
    best_corr: list[float]
    orientation_diff: list[float]
    matched: list[bool]
    match_is_curve_detector: list[bool]

    @property
    def share(self) -> float:
        """Share of A's detectors matched (0.0 when A has none)."""
        return sum(self.matched) / len(self.matched) if self.matched else 0.0

    def to_json(self) -> dict:
        return {"detectors": len(self.units), "matched": sum(self.matched), "share_matched": round(self.share, 3),
                "matches_that_are_curve_detectors": sum(m and c for m, c in zip(
                    self.matched, self.match_is_curve_detector, strict=True)),
                "median_best_corr": round(float(torch.tensor(self.best_corr).median()), 3) if self.units else None,
                "pairs": [{"a": u, "b": b, "corr": round(r, 3), "diff_deg": round(d, 1)} for u, b, r, d, m in zip(
                    self.units, self.best_match, self.best_corr, self.orientation_diff, self.matched, strict=True)
                    if m]}


def family_census(curves: RadialTuning, high_low: HighLowTuning | None = None, **criteria: float) -> dict:
    """Curve and high-low detector census of one layer from its tunings (``criteria``: passed to
    ``curve_detectors``).  JSON-ready: units, counts, shares of units, coverage of 8 orientation sectors."""
    found = curve_detectors(curves, **criteria)
    out = {"layer": curves.layer, "units": len(curves.channels), "curve_detectors": len(found.units),
           "curve_share": round(len(found.units) / max(1, len(curves.channels)), 3),
           "curve_coverage_of_8": found.coverage(8), "curve_units": found.units}
    if high_low is not None:
        rows = classify_units(curves, high_low, curve_criteria=criteria or None)
        hl = [r for r in rows if r["kind"] == "high_low"]
        out.update({"high_low_detectors": len(hl), "high_low_share": round(len(hl) / max(1, len(rows)), 3),
                    "high_low_coverage_of_8": orientation_coverage([r["preferred_deg"] for r in hl], 8)})
    return out


def family_match(curves_a: RadialTuning, curves_b: RadialTuning, *, min_corr: float = 0.8,
                 max_diff: float = 22.5) -> FamilyMatch:
    """Match A's curve detectors (``curve_detectors(curves_a)``) to B's units by tuning curve (see the module).
    Both tunings must be over the same orientations."""
    if not torch.equal(curves_a.orientations, curves_b.orientations):
        raise MechscopeError("the two tunings must use the same orientations (same n_orientations)")
    units = curve_detectors(curves_a).units
    rows = [curves_a.channels.index(u) for u in units]
    m = tuning_match(curves_a.responses[rows], curves_b.responses, curves_a.orientations)
    b_detectors = set(curve_detectors(curves_b).units)
    best = [curves_b.channels[int(i)] for i in m.best_match]
    corr, diff = m.best_corr.tolist(), m.orientation_diff.tolist()
    matched = [r >= min_corr and d <= max_diff for r, d in zip(corr, diff, strict=True)]
    return FamilyMatch(units, best, corr, diff, matched, [b in b_detectors for b in best])


@dataclass(frozen=True)
class ArchitectureComparison:
    """Censuses of A, B and the control (B untrained), and A's curve detectors matched into B and into the
    control."""

    a: dict
    b: dict
    control: dict
    match: FamilyMatch
    match_control: FamilyMatch
    criteria: dict = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """Share of A's detectors matched in B minus the share matched in the control."""
        return self.match.share - self.match_control.share

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "control": self.control, "match": self.match.to_json(),
                "match_control": self.match_control.to_json(), "criteria": self.criteria}

    def save(self, out: str | os.PathLike, names: tuple[str, str] = ("A", "B")) -> list[Path]:
        """Write ``<A>_<layer>_vs_<B>_<layer>.json`` and ``.png`` into ``out`` (atomically); return the paths."""
        from mechscope.artefacts import atomic_write_json
        from mechscope.plots import new_figure, save_figure
        from mechscope.units import file_stem

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        stem = file_stem(f"{names[0]}_{self.a['layer']}_vs_{names[1]}_{self.b['layer']}")
        atomic_write_json(out / f"{stem}.json", {"models": list(names), **self.to_json()})
        fig, ax = new_figure(figsize=(4.5, 3))
        self.plot(ax, names)
        fig.tight_layout()
        save_figure(fig, out / f"{stem}.png", dpi=80, tight=False)
        return [out / f"{stem}.json", out / f"{stem}.png"]

    def plot(self, ax=None, names: tuple[str, str] = ("A", "B")):
        """Histogram of the best tuning correlations of A's detectors in B and in the control."""
        from mechscope.plots import new_figure

        if ax is None:
            _, ax = new_figure(figsize=(4.5, 3))
        for m, label in ((self.match, f"in {names[1]}"), (self.match_control, f"in untrained {names[1]}")):
            ax.hist(m.best_corr, bins=20, range=(-0.5, 1), alpha=0.6, label=f"{label}: {m.share:.0%} matched")
        ax.axvline(self.criteria.get("min_corr", 0.8), color="k", lw=0.8)
        ax.set_xlabel(f"best tuning corr of {names[0]} {self.a['layer']} curve detectors", fontsize=8)
        ax.legend(fontsize=7)
        return ax


def layer_tunings(model: nn.Module, layer: str, *, n_orientations: int = 72,
                  high_low: bool = True) -> tuple[RadialTuning, HighLowTuning | None]:
    """Radial tuning curves (and high-low tunings) of every unit of ``layer`` at ``n_orientations``."""
    curves = radial_tuning_curve(model, layer, n_orientations=n_orientations, progress=False)
    return curves, (high_low_tuning(model, layer, n_orientations=n_orientations) if high_low else None)


def compare_tunings(a: tuple[RadialTuning, HighLowTuning | None], b: tuple[RadialTuning, HighLowTuning | None],
                    control: tuple[RadialTuning, HighLowTuning | None], *, min_corr: float = 0.8,
                    max_diff: float = 22.5) -> ArchitectureComparison:
    """``ArchitectureComparison`` from precomputed ``layer_tunings`` of A, B and the control (B untrained)."""
    return ArchitectureComparison(family_census(*a), family_census(*b), family_census(*control),
                                  family_match(a[0], b[0], min_corr=min_corr, max_diff=max_diff),
                                  family_match(a[0], control[0], min_corr=min_corr, max_diff=max_diff),
                                  {"min_corr": min_corr, "max_diff": max_diff,
                                   "orientations": int(a[0].orientations.numel())})


def compare_architectures(model_a: nn.Module, layer_a: str, model_b: nn.Module, layer_b: str,
                          control_b: nn.Module, *, n_orientations: int = 72, min_corr: float = 0.8,
                          max_diff: float = 22.5, high_low: bool = True) -> ArchitectureComparison:
    """Compare the detector families of ``model_a`` at ``layer_a`` and ``model_b`` at ``layer_b``, against
    ``control_b`` (B's architecture, untrained) at ``layer_b`` (see the module)."""
    return compare_tunings(*(layer_tunings(m, layer, n_orientations=n_orientations, high_low=high_low)
                             for m, layer in ((model_a, layer_a), (model_b, layer_b), (control_b, layer_b))),
                           min_corr=min_corr, max_diff=max_diff)
