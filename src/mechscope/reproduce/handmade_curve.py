"""Claim (Curve Circuits, Cammarata et al. 2021): a curve detector can be written by hand from line detectors
arranged along an arc, and its tuning matches that of learned curve detectors."""

from __future__ import annotations

from pathlib import Path

from mechscope.reproduce.claims import Claim, Result
from mechscope.reproduce.organism import shapes_tuning
from mechscope.vision.families.equivariance import shift_scores
from mechscope.vision.circuits.handmade import curve_circuit
from mechscope.vision.families.tuning import curve_detectors, radial_tuning_curve

DESIGNED = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
MAX_ERROR, MIN_PREFERENCE, MIN_MATCH = 10.0, 1.5, 0.8


def check(out: Path, n_orientations: int = 180, designed: tuple[float, ...] = DESIGNED) -> Result:
    errors, preferences, curves = [], [], []
    for o in designed:
        tc = radial_tuning_curve(curve_circuit(orientation=o, radius=8.0), "curve", n_orientations=n_orientations,
                                 size=64, position="centre", progress=False)
        errors.append(abs((float(tc.preferred[0]) - o + 180) % 360 - 180))
        preferences.append(float(tc.curve_preference[0]))
        curves.append(tc.responses[0])
    learned = shapes_tuning("mixed3b", n_orientations)
    found = curve_detectors(learned)
    rows = learned.responses[[learned.channels.index(u) for u in found.units]]
    best = shift_scores(curves[0], rows)[0].max(-1).values.float()   # [detectors]: best over circular shifts
    numbers = {"max_orientation_error_deg": max(errors), "min_curve_preference": round(min(preferences), 3),
               "best_match_to_learned": round(float(best.max()), 3),
               "median_match_to_learned": round(float(best.median()), 3),
               "best_matching_unit": f"mixed3b:{found.units[int(best.argmax())]}", "learned_detectors": len(rows)}
    passed = max(errors) <= MAX_ERROR and min(preferences) >= MIN_PREFERENCE and float(best.max()) >= MIN_MATCH
    return Result(numbers, passed, [],
                  "Hand-written net: 8 line detectors (5x5 zero-mean bars) + one 21x21 unit wired along an arc of "
                  "radius 8 px (excite the line detector matching the arc's normal, inhibit the orthogonal one). "
                  "Match = best circular-shift correlation of its tuning curve with a learned detector's.")


CLAIM = Claim(
    name="handmade-curve-detector",
    paper="Curve Circuits (Cammarata et al., Distill 2021)",
    statement="a curve detector written by hand from line detectors behaves like the organism's learned ones",
    criterion=f"designed orientation recovered within {MAX_ERROR:g} deg at 8 orientations, curves preferred "
              f">= {MIN_PREFERENCE}x over lines, and tuning correlation >= {MIN_MATCH} with a learned mixed3b "
              "curve detector",
    check=check,
)
