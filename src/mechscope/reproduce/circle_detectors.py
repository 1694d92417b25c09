"""Claim (Curve Detectors, Cammarata et al., Distill 2020, "feature use"): later units read the curve detectors
arranged around a circle — circle detectors — checked on the shapes organism (mixed3b → maxpool4 → mixed4a).

Stated before looking at results:

* the detectors: mixed3b's curve detectors (``radial_tuning_curve`` at ``ORIENTATIONS`` orientations +
  ``curve_detectors``, default criteria) with their preferred orientations;
* the weights: the expanded weights (linearized model) from those detectors at every offset to each of mixed4a's
  224 units at the centre of its map (``circle_units.layer_expanded_weights``);
* the measure: ``circles.circle_scores`` — over 8 sectors of offset angle, the weight-averaged agreement of the
  detectors' orientation with the one a circle centred on the unit needs there (``θ = φ + 180°``), averaged
  over all 8 sectors (an empty sector counts 0);
* null: per unit, ``DRAWS`` seeded shuffles of the detectors' orientation labels; a unit is a **circle unit**
  when its score is above the 99th percentile of its own null (1 % of units by chance: ``0.01 x 224``);
* control: the same count on the **untrained** network (seed 0), whose curve detectors are its own (when fewer
  than the trained net's count pass ``curve_detectors``, that many units with the highest curve preference stand
  in, with their preferred orientations);
* stimuli: rings (5 radii) centred on the unit's receptive field vs 90° and 180° arcs of the same circles at 8
  positions and straight segments tangent to them; ``ring ratio`` = best ring / best of the others, read at the
  same position; its control: as many randomly drawn (seeded) mixed4a units that are not circle units but respond
  (peak response to the stimuli above 10 % of the layer's strongest).

Criteria:

1. circle units in the trained mixed4a >= ``MIN_UNITS`` and >= ``FACTOR`` x max(chance expectation, untrained
   net's count);
2. the top ``TOP`` circle units (by score) have median ring ratio > 1 and above the control units' median.

The ring ratio alone cannot tell circle wiring from other wiring that sums detectors around the centre (a
hand-built anti-circle unit, ``tests/vision/circuits/test_circles.py``, also answers a ring ~1.8x more than its
best arc, as its circle twin does): criterion 2 therefore also compares it with control units.

Also reported, not judged: the share of circle units (and of all units) with ring ratio > 1, and the best
``coverage`` (sectors of 8 whose alignment is >= 0.5) among circle units.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from mechscope.reproduce.claims import Claim, Result, fmt
from mechscope.vision.circuits.circle_units import CircleUnits, detector_orientations, find_circle_units, ring_ratio
from mechscope.zoo.registry import load

LAYER, DETECTORS, ORIENTATIONS, DRAWS = "mixed4a", "mixed3b", 72, 200
# Thresholds: MIN_UNITS (5) a stated margin; FACTOR (3x) over the larger of chance (1% of units) and the
# untrained net's count (the controls).
MIN_UNITS, FACTOR, TOP = 5, 3.0, 8
PAPER = "Curve Detectors (Cammarata et al., Distill 2020)"


@lru_cache(maxsize=2)
def measure(n_orientations: int = ORIENTATIONS, draws: int = DRAWS) -> tuple[CircleUnits, CircleUnits]:
    """``(trained, untrained)`` circle-unit searches of mixed4a; cached per process."""
    net = load("shapes", device="cpu")
    trained = find_circle_units(net, LAYER, detectors_layer=DETECTORS, n_orientations=n_orientations, draws=draws)
    raw = load("shapes", weights="random", seed=0, device="cpu")
    det = detector_orientations(raw, DETECTORS, n_orientations=n_orientations,
                                min_detectors=len(trained.detectors.units))
    untrained = find_circle_units(raw, LAYER, detectors_layer=DETECTORS, n_orientations=n_orientations,
                                  draws=draws, detectors=det, stimuli=False)
    return trained, untrained


def _median(values: torch.Tensor) -> float | None:
    return round(float(values.median()), 3) if len(values) else None


def check(out: Path, n_orientations: int = ORIENTATIONS, draws: int = DRAWS, seed: int = 0) -> Result:
    trained, untrained = measure(n_orientations, draws)
    units = len(trained.test.scores)
    chance = 0.01 * units
    n, n_raw = len(trained.significant()), len(untrained.significant())
    need = max(float(MIN_UNITS), FACTOR * max(chance, n_raw))
    top = trained.significant()[:TOP]
    ratio = ring_ratio(trained.responses)
    peak = torch.stack([v.amax(1) for v in trained.responses.values()]).amax(0)
    sig = set(trained.significant())
    pool = [u for u in range(units) if u not in sig and float(peak[u]) > 0.1 * float(peak.max())]
    gen = torch.Generator().manual_seed(seed)
    control = sorted(pool[int(i)] for i in torch.randperm(len(pool), generator=gen)[:max(len(top), 1)])
    top_med, ctrl_med = _median(ratio[top]), _median(ratio[control])
    count_ok = n >= need
    ring_ok = top_med is not None and ctrl_med is not None and top_med > 1.0 and top_med > ctrl_med
    numbers = {
        "layer": LAYER, "detectors_layer": DETECTORS, "detectors": len(trained.detectors.units), "units": units,
        "draws": draws, "circle_units": n, "expected_by_chance": round(chance, 2), "untrained_circle_units": n_raw,
        "untrained_detectors_fallback": untrained.detectors.fallback, "needed": round(need, 2),
        "score_median_all": round(float(trained.test.scores.median()), 4),
        "untrained_score_median_all": round(float(untrained.test.scores.median()), 4),
        "top": trained.summary(TOP)["top"],
        "ring_ratio_top_median": top_med, "ring_ratio_control_median": ctrl_med, "control_units": control,
        "count_criterion": count_ok, "ring_criterion": ring_ok,
        # reported, not judged: how ring-selective the circle units are next to the whole layer
        "share_ring_ratio_above_1_circle_units": round(float((ratio[sorted(sig)] > 1).double().mean()), 3)
        if sig else None,
        "share_ring_ratio_above_1_all_units": round(float((ratio > 1).double().mean()), 3),
        "max_coverage_of_8_circle_units": max((trained.details(u).coverage for u in sig), default=0),
    }
    trained.figure(out / "circle_detectors.png", TOP)
    untrained.figure(out / "circle_detectors_untrained.png", 4)
    controls = {"untrained_circle_units": n_raw, "expected_by_chance": numbers["expected_by_chance"],
                "untrained_score_median_all": numbers["untrained_score_median_all"],
                "ring_ratio_control_median": ctrl_med}
    summary = (f"{n} circle units (needs >= {fmt(need)}; untrained net: {n_raw}, chance {fmt(chance)}); ring/arc "
               f"ratio {fmt(top_med)} vs {fmt(ctrl_med)} for random responsive units")
    return Result(numbers, count_ok and ring_ok, ["circle_detectors.png", "circle_detectors_untrained.png"],
                  controls=controls, summary=summary, note=
                  f"Circle score over the expanded weights from {len(trained.detectors.units)} mixed3b curve "
                  f"detectors to each mixed4a unit at the map centre; significance against {draws} shuffles of the "
                  f"detectors' orientation labels (99th percentile per unit). The untrained control uses "
                  f"{len(untrained.detectors.units)} detectors"
                  f"{' (too few passed; top units by curve preference)' if untrained.detectors.fallback else ''}. "
                  f"Ring ratio: best full circle over the best 90/180-degree arc or tangent segment, stimuli "
                  f"centred on the unit's receptive field at pixel {trained.pixel_centre}. A circle unit beats its own "
                  f"shuffles; its score (best {float(trained.test.scores.max()):.2f} of a possible 1; untrained best "
                  f"{float(untrained.test.scores.max()):.2f}) and coverage say how circle-like it is: sectors agreeing "
                  f"with the circle (alignment >= 0.5) number at most {numbers['max_coverage_of_8_circle_units']} of 8 "
                  f"among circle units, so these are biases towards the circle's orientations, not whole circles.")


CLAIM = Claim(
    name="circle-detectors",
    paper=PAPER,
    statement="units of mixed4a read mixed3b's curve detectors at positions around a circle, each oriented for "
              "the circle, and respond more to full circles than to arcs",
    criterion=f"mixed4a units whose circle score beats the 99th percentile of {DRAWS} orientation shuffles >= "
              f"{MIN_UNITS} and >= {FACTOR:g} x max(1 % of units, the untrained net's count); the top {TOP}'s "
              f"median best-ring / best-arc-or-line ratio > 1 and above as many random responsive non-circle units'",
    check=check,
)
