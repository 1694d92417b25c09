"""What ``mechscope tuning`` and ``mechscope families`` compute and draw, as functions a notebook calls too: each
returns a result with its JSON payload, its figures and ``save(out)``.

* ``unit_tuning(model, unit)``: a unit's radial tuning curve (polar plot, orientation x curvature map), in sigma
  of its dataset distribution when ``moments`` are given (``stored_moments`` reads them from a stats store);
* ``layer_detectors(model, layer)``: every unit of a layer ranked as a curve, high-low or line detector, and
  the detectors by preferred orientation;
* ``rotated_examples(model, layer, channels, batches, k)``: each unit's top centred dataset examples turned
  through 360 degrees, every listed unit recorded;
* ``families_analysis(model, layer, by=...)``: equivariant families (by tuning curves or rotated kernels),
  optionally branch specialization (``branch_splits``) and universality against another model
  (``universality_report``).

Example (random weights, coarse settings)::

    >>> import tempfile
    >>> from pathlib import Path
    >>> from mechscope.zoo.registry import load
    >>> net = load("shapes", weights="random", device="cpu")
    >>> fam = families_analysis(net, "conv2d0", by="weights", threshold=0.5, size=64)
    >>> fam.payload["by"], sum(len(f) for f in fam.payload["families"])
    ('weights', 32)
    >>> t = unit_tuning(net, "conv2d0:1", size=64, n_orientations=8)
    >>> len(t.row["responses"]), "peak_sigma" in t.row
    (8, False)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     sorted(p.name for p in fam.save(Path(d)) + t.save(Path(d)))  # doctest: +NORMALIZE_WHITESPACE
    ['conv2d0_1_curvature.png', 'conv2d0_1_radial.png', 'conv2d0_1_tuning.json',
     'conv2d0_families.json', 'conv2d0_families.png']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mechscope.artefacts import atomic_write_json
from mechscope.errors import MechscopeError
from mechscope.units import file_stem
from mechscope.vision.families.tuning import RadialTuning, RotationTuning, curve_detectors, radial_tuning_curve

DETECTOR_KINDS = ("curve", "high_low", "line")
FAMILIES_BY = ("tuning", "weights")


# ---- tuning of units and layers ------------------------------------------------------------------------------


def stored_moments(stats_dir: Path, model: str, layer: str, channel: int) -> tuple[float, float]:
    """``(mean, std)`` of a unit from the store that ``mechscope stats`` wrote at ``stats_dir``; a
    ``MechscopeError`` naming what the store holds (and the command that fills it) when it has no such unit."""
    from mechscope.store import open_store, read_rows

    with open_store(stats_dir, create=False) as store:
        rows = read_rows(store, "stats", model=model, layer=layer, channel=channel)
        if not rows:
            have = sorted({(r["model"], r["layer"]) for r in read_rows(store, "stats")})
            raise MechscopeError(f"{stats_dir} holds no statistics of {model} {layer}:{channel}; it has "
                                 f"{have or 'none'} (run `mechscope stats {model} {layer} --out {stats_dir}`)")
    return float(rows[0]["mean"]), float(rows[0]["std"])


@dataclass(frozen=True)
class UnitTuning:
    """``tuning``: the unit's ``RadialTuning``; ``row``: its JSON (preferred orientation, curves/lines, FWHM,
    opposite, the curves, the lines, and ``responses_sigma``/``peak_sigma`` when moments were given)."""

    unit: str
    tuning: RadialTuning
    row: dict[str, Any]

    def save(self, out: Path) -> list[Path]:
        """``{unit}_radial.png``, ``{unit}_curvature.png`` and ``{unit}_tuning.json`` under ``out``."""
        from mechscope.plots import new_figure, save_figure

        base, c = Path(out) / file_stem(self.unit), self.tuning.channels[0]
        fig, ax = new_figure(subplot_kw={"projection": "polar"}, figsize=(3.4, 3.4))
        self.tuning.plot(c, ax=ax)
        written = [save_figure(fig, Path(f"{base}_radial.png"))]
        fig, ax = new_figure(figsize=(5, 2.4))
        self.tuning.plot_curvature(c, ax=ax)
        written.append(save_figure(fig, Path(f"{base}_curvature.png")))
        written.append(atomic_write_json(Path(f"{base}_tuning.json"), self.row))
        return written


def unit_tuning(model: nn.Module, unit: str, *, size: int = 64, n_orientations: int = 720,
                moments: tuple[float, float] | None = None) -> UnitTuning:
    """The radial tuning curve of ``unit`` (e.g. ``mixed3b:45``) at ``n_orientations`` orientations; with
    ``moments = (mean, std)`` of its dataset distribution the responses also in sigma units."""
    tc = radial_tuning_curve(model, unit, n_orientations=n_orientations, size=size, progress=False)
    row = {"unit": unit, "position": list(tc.position), "preferred_deg": float(tc.preferred[0]),
           "curve_preference": float(tc.curve_preference[0]), "fwhm_deg": float(tc.width[0]),
           "opposite": float(tc.opposite[0]), "orientations": tc.orientations.tolist(),
           "responses": tc.responses[0].tolist(), "lines": tc.lines[0].tolist()}
    if moments is not None and moments[1] > 0:
        mean, std = moments
        row["responses_sigma"] = ((tc.responses[0] - mean) / std).tolist()
        row["peak_sigma"] = float((tc.responses[0].max() - mean) / std)
    return UnitTuning(unit, tc, row)


@dataclass(frozen=True)
class LayerDetectors:
    """``rows``: every unit's kind and scores (``detectors.classify_units``); ``by_orientation``: per kind, the
    units in each of 8 sectors of preferred orientation."""

    layer: str
    rows: list[dict[str, Any]]
    by_orientation: dict[str, dict[int, list[str]]]

    @property
    def counts(self) -> dict[str, int]:
        """Units of each kind (``curve``, ``high_low``, ``line``, ``other``)."""
        return {k: sum(r["kind"] == k for r in self.rows) for k in (*DETECTOR_KINDS, "other")}

    def figure(self) -> Any:
        """A stacked polar bar chart: detectors of each kind per sector of preferred orientation."""
        from mechscope.plots import new_figure

        fig, ax = new_figure(subplot_kw={"projection": "polar"}, figsize=(3.8, 3.8))
        bottom = [0] * 8
        for kind in DETECTOR_KINDS:
            counts = [len(self.by_orientation[kind].get(s, [])) for s in range(8)]
            ax.bar([math.radians(45 * s + 22.5) for s in range(8)], counts, width=math.radians(40), bottom=bottom,
                   label=kind)
            bottom = [b + c for b, c in zip(bottom, counts)]
        ax.set_title(f"{self.layer}: detectors by preferred orientation", fontsize=8)
        ax.legend(fontsize=7, loc="lower right")
        return fig

    def save(self, out: Path) -> list[Path]:
        """``{layer}_detectors.json`` and ``{layer}_detectors.png`` under ``out``."""
        from mechscope.plots import save_figure

        return [atomic_write_json(Path(out) / f"{self.layer}_detectors.json",
                                  {"layer": self.layer, "units": self.rows, "by_orientation": self.by_orientation}),
                save_figure(self.figure(), Path(out) / f"{self.layer}_detectors.png")]


def layer_detectors(model: nn.Module, layer: str, *, size: int = 64, n_orientations: int = 720) -> LayerDetectors:
    """Rank every unit of ``layer`` as a curve, high-low or line detector (radial tuning at ``n_orientations``
    orientations and high-low tuning), grouped by preferred orientation."""
    from mechscope.vision.families.detectors import classify_units, group_by_orientation, high_low_tuning

    tc = radial_tuning_curve(model, layer, n_orientations=n_orientations, size=size, progress=False)
    rows = classify_units(tc, high_low_tuning(model, layer, size=size))
    return LayerDetectors(layer, rows, {k: group_by_orientation(rows, k) for k in DETECTOR_KINDS})


@dataclass(frozen=True)
class RotatedExamples:
    """``tuning``: the responses of every listed unit of ``layer`` to the top ``k`` examples of ``layer:channel``
    turned through 360 degrees; ``about``: facts for the JSON (e.g. the dataset)."""

    layer: str
    channel: int
    k: int
    tuning: RotationTuning
    about: dict[str, Any]

    @property
    def peaks(self) -> dict[str, float]:
        """The rotation (degrees) at which each unit peaks."""
        rt = self.tuning
        return {f"{self.layer}:{ch}": float(p) for ch, p in zip(rt.channels, rt.angles[rt.responses.argmax(1)])}

    def save(self, out: Path) -> list[Path]:
        """``{layer}_{channel}_rotated.png`` and ``.json`` under ``out``."""
        from mechscope.plots import new_figure, save_figure

        rt, base = self.tuning, Path(out) / f"{self.layer}_{self.channel}_rotated"
        fig, ax = new_figure(figsize=(5, 2.6))
        rt.plot(ax=ax)
        ax.set_title(f"top {self.k} examples of {self.layer}:{self.channel}, rotated", fontsize=8)
        return [save_figure(fig, base.with_suffix(".png")),
                atomic_write_json(base.with_suffix(".json"),
                                  {"examples_of": f"{self.layer}:{self.channel}", **self.about, "k": self.k,
                                   "angles": rt.angles.tolist(),
                                   "responses": {f"{self.layer}:{ch}": rt.responses[i].tolist()
                                                 for i, ch in enumerate(rt.channels)}})]


def rotated_examples(model: nn.Module, layer: str, channels: Sequence[int], batches: Iterable[Any], k: int, *,
                     about: dict[str, Any] | None = None) -> list[RotatedExamples]:
    """For each of ``channels``: its top ``k`` centred examples from ``batches``, rotated (1 degree steps), with
    every one of ``channels`` recorded."""
    from mechscope.vision.families.tuning import centred_top_examples, rotated_tuning

    tops = centred_top_examples(model, layer, list(channels), batches, k=k, progress=False)
    return [RotatedExamples(layer, c, k, rotated_tuning(model, layer, tops[c], list(channels), position="centre",
                                                       progress=False), dict(about or {}))
            for c in channels]


# ---- families, branches, universality ------------------------------------------------------------------------


def _score_figure(score: Tensor, labels: list[str], title: str) -> Any:
    from mechscope.plots import new_figure

    fig, ax = new_figure(figsize=(6, 5))
    image = ax.imshow(score.numpy(), cmap="viridis", vmin=-1 if float(score.min()) < 0 else 0, vmax=1)
    if len(labels) <= 48:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=5)
        ax.set_yticks(range(len(labels)), labels, fontsize=5)
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


@dataclass(frozen=True)
class BranchSplits:
    """``splits``: ``{"colour" | "curve": branch_specialization(...).as_dict()}`` of one inception block."""

    layer: str
    splits: dict[str, dict[str, Any]]

    def figure(self) -> Any:
        """Share of each branch's units that are colour units / curve detectors."""
        from mechscope.plots import new_figure

        fig, ax = new_figure(figsize=(5, 2.6))
        for k, (kind, split) in enumerate(self.splits.items()):
            rows = split["branches"]
            ax.bar([i + 0.4 * k for i in range(len(rows))], [r["count"] / max(r["width"], 1) for r in rows],
                   width=0.4, label=kind)
            ax.set_xticks([i + 0.2 for i in range(len(rows))], [r["branch"] for r in rows])
        ax.set_ylabel("share of branch")
        ax.legend(fontsize=7)
        return fig

    def save(self, out: Path) -> list[Path]:
        from mechscope.plots import save_figure

        return [atomic_write_json(Path(out) / f"{self.layer}_branches.json", self.splits),
                save_figure(self.figure(), Path(out) / f"{self.layer}_branches.png")]


def branch_splits(model: nn.Module, layer: str, curve_units: Sequence[int], *, size: int = 64) -> BranchSplits:
    """Colour units (``colour_vs_grey``) and ``curve_units`` counted per branch of the inception block ``layer``,
    with hypergeometric p-values."""
    from mechscope.vision.families.branches import branch_specialization, colour_vs_grey

    colour = colour_vs_grey(model, layer, size=size)
    return BranchSplits(layer, {"colour": branch_specialization(model, layer, colour).as_dict(),
                                "curve": branch_specialization(model, layer, {c: True for c in curve_units}).as_dict()})


@dataclass(frozen=True)
class UniversalityReport:
    """``payload``: ``{"layer", "model", "other", "threshold", "share", "best_match", "best_corr"}``."""

    payload: dict[str, Any]
    best_corr: Tensor

    def figure(self) -> Any:
        """Histogram of each unit's best correlation with a unit of the other model."""
        from mechscope.plots import new_figure

        p = self.payload
        fig, ax = new_figure(figsize=(4, 2.6))
        ax.hist(self.best_corr.numpy(), bins=20, range=(-1, 1))
        ax.axvline(p["threshold"], color="k", lw=0.8)
        ax.set_xlabel(f"best correlation with a unit of {p['other']}")
        ax.set_title(f"{p['layer']}: {p['share']:.0%} matched at {p['threshold']}", fontsize=8)
        return fig

    def save(self, out: Path) -> list[Path]:
        from mechscope.plots import save_figure

        layer = self.payload["layer"]
        return [atomic_write_json(Path(out) / f"{layer}_universality.json", self.payload),
                save_figure(self.figure(), Path(out) / f"{layer}_universality.png")]


def universality_report(model: nn.Module, other: nn.Module, layer: str, batches: Iterable[Any], *,
                        threshold: float = 0.8, names: tuple[str, str] = ("model", "other")) -> UniversalityReport:
    """Match ``layer``'s units of ``model`` to those of ``other`` by activation correlation over ``batches``; the
    share matched at ``threshold``.  ``names``: the two models' names for the payload."""
    from mechscope.vision.families.universality import activation_correlation, universality

    u = universality(activation_correlation(model, other, layer, layer, batches, progress=False), threshold)
    return UniversalityReport({"layer": layer, "model": names[0], "other": names[1], "threshold": threshold,
                               "share": u.share, "best_match": u.best_match.tolist(),
                               "best_corr": [round(float(c), 4) for c in u.best_corr]}, u.best_corr)


@dataclass(frozen=True)
class FamiliesAnalysis:
    """``payload``: ``{"layer", "by", "threshold", "families", ...}`` (curve detectors and their preferred
    orientations by tuning; the angles tried and each unit's best one by weights); ``units``: the units scored;
    ``score``/``order``: the equivariance matrix and the order it is drawn in (``None`` when nothing to score);
    ``curve_units``: the layer's curve detectors when tuning curves were measured; ``branches``/``universality``:
    the optional parts."""

    payload: dict[str, Any]
    units: list[int]
    score: Tensor | None
    order: list[int]
    curve_units: list[int] | None = None
    branches: BranchSplits | None = None
    universality: UniversalityReport | None = None

    @property
    def families(self) -> list[list[int]]:
        return self.payload["families"]

    def figure(self) -> Any:
        """The equivariance matrix in family (or preferred-orientation) order."""
        p = self.payload
        return _score_figure(self.score[self.order][:, self.order], [str(self.units[i]) for i in self.order],
                             f"{p['layer']}: {p['by']} equivariance ({len(self.families)} families at "
                             f"{p['threshold']})")

    def save(self, out: Path) -> list[Path]:
        """``{layer}_families.json`` and ``.png`` (when there is a score), then the branches' and universality's."""
        from mechscope.plots import save_figure

        layer = self.payload["layer"]
        written = [atomic_write_json(Path(out) / f"{layer}_families.json", self.payload)]
        if self.score is not None:
            written.append(save_figure(self.figure(), Path(out) / f"{layer}_families.png"))
        for part in (self.branches, self.universality):
            if part is not None:
                written.extend(part.save(out))
        return written


def families_analysis(model: nn.Module, layer: str, *, by: str = "tuning", threshold: float = 0.8,
                      n_orientations: int = 180, angles: int = 8, size: int = 64, branches: bool = False,
                      other: nn.Module | None = None, other_batches: Iterable[Any] | None = None,
                      names: tuple[str, str] = ("model", "other")) -> FamiliesAnalysis:
    """Families of ``layer``'s units: ``by="tuning"``, curve detectors whose radial tuning curves (at
    ``n_orientations``) are shifted copies; ``by="weights"``, kernels that are rotated copies (``angles``
    rotations over 360 degrees; for a layer whose inputs do not rotate).  Units scoring ``threshold`` or more are
    linked into one family.  ``branches``: also the branch splits of colour units and curve detectors.
    ``other``: also universality (``universality_report``) against that model over ``other_batches``; ``names``:
    the two models' names for its payload."""
    from mechscope.vision.families import equivariance as eqv

    if by not in FAMILIES_BY:
        raise MechscopeError(f"--by must be 'tuning' or 'weights', not {by!r}")
    tc = (radial_tuning_curve(model, layer, n_orientations=n_orientations, size=size, progress=False)
          if by == "tuning" or branches else None)
    found = curve_detectors(tc) if tc is not None else None
    if by == "tuning":
        eq = eqv.equivariance_matrix(tc, found.units) if found.units else None
        units, order = found.units, sorted(range(len(found.units)), key=lambda i: found.preferred[i])
        score = eq.score if eq is not None else None
        extra = {"curve_detectors": found.units, "preferred_deg": found.preferred}
    else:
        from mechscope.vision.circuits.weights import layer_kernels

        kernels = layer_kernels(model, layer)
        grid = [k * 360.0 / angles for k in range(angles)]
        score, angle = eqv.weight_equivariance_matrix(kernels, grid)
        units = list(range(kernels.shape[0]))
        extra = {"angles_deg": grid, "best_angle_deg": angle.tolist()}
    fams = eqv.families(score, threshold, units) if score is not None else []
    if score is not None and by == "weights":
        order = [units.index(u) for f in fams for u in f]
    payload = {"layer": layer, "by": by, "threshold": threshold, "families": fams, **extra}
    curve_units = found.units if found is not None else None
    split = branch_splits(model, layer, curve_units or [], size=size) if branches else None
    shared = (universality_report(model, other, layer, other_batches, threshold=threshold, names=names)
              if other is not None else None)
    return FamiliesAnalysis(payload, units, score, order, curve_units, split, shared)
