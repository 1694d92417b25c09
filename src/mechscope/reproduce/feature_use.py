"""Claim (Curve Detectors, Cammarata et al. 2020, "feature use"): the network uses its curve detectors —
removing them costs the accuracy of the task that needs curves.  Checked on the shapes organism's mixed3b.

Stated before looking at results:

* the units: mixed3b's curve detectors (``radial_tuning_curve`` + ``curve_detectors``, default criteria);
* the ablation: those channels of mixed3b set to 0 (``zero``) or to their per-position mean over
  256 training-world images (``mean``; ``vision.circuits.feature_use.MEAN_IMAGES``);
* the measure: the drop of each task's accuracy (shape, curve, boundary, colour) on the card's held-out world
  (``images`` items), unablated minus ablated;
* the control: ``draws`` random sets of the same size drawn from mixed3b's *other* units (seeded), ablated the
  same way;
* the criterion: in both modes, the curve task's drop with the detectors ablated is strictly larger than with
  at least ``MIN_SHARE`` of the random sets.  The other tasks' drops are reported, not judged.

Both use ``vision.circuits.feature_use.task_ablation`` (the network runs once up to mixed3b; each ablation
reruns only the layers after it, ``ShapesNet.forward_from``; the tests check that against the full model with
``ablate_units``' forward hook).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mechscope.data.shapes import IGNORE, TASKS
from mechscope.errors import MechscopeError
from mechscope.reproduce.claims import Claim, Result, fmt
from mechscope.reproduce.organism import shapes_tuning
from mechscope.vision.circuits.feature_use import ablation_plot, shapes_held_out, task_ablation
from mechscope.vision.families.tuning import curve_detectors
from mechscope.zoo.registry import load

LAYER, TASK = "mixed3b", "curve"
MODES = ("zero", "mean")
MIN_SHARE = 0.95   # the control: random same-size sets; beat 95% of them (a one-sided 5% level)


@torch.no_grad()
def check(out: Path, images: int = 500, draws: int = 20, n_orientations: int = 180, seed: int = 0) -> Result:
    net = load("shapes", device="cpu").eval()
    found = curve_detectors(shapes_tuning(LAYER, n_orientations))
    detectors = found.units
    width = net.layer_table[LAYER].channels
    if not detectors or width - len(detectors) < len(detectors):
        raise MechscopeError(f"{len(detectors)} curve detectors in {LAYER}: too few or too many for the control")
    x, labels = shapes_held_out("shapes", images)
    results = {mode: task_ablation(net, LAYER, detectors, x, labels, mode=mode, draws=draws, seed=seed)
               for mode in MODES}
    ablation_plot(list(results.values()), out / "feature_use_ablation.png")

    def summary(r) -> dict:
        return {"detector_drop": {t: round(v, 4) for t, v in r.drop.items()},
                "random_drop_median": {t: round(float(torch.tensor([d[t] for d in r.random_drops]).median()), 4)
                                       for t in TASKS},
                "random_drop_max": {t: round(max(d[t] for d in r.random_drops), 4) for t in TASKS},
                "share_random_below_detectors": round(r.share_below[TASK], 3),
                "p_value": round(r.p_value[TASK], 4)}

    per_mode = {mode: summary(r) for mode, r in results.items()}
    share = {m: per_mode[m]["share_random_below_detectors"] for m in MODES}
    passed = all(share[m] >= MIN_SHARE for m in MODES)
    numbers = {
        "layer": LAYER, "curve_detectors": len(detectors), "other_units": width - len(detectors),
        "random_draws": draws, "held_out_images": images,
        "baseline_accuracy": {t: round(v, 4) for t, v in results["zero"].baseline.items()}, **per_mode,
    }
    drop = {m: per_mode[m]["detector_drop"][TASK] for m in MODES}
    top = {m: per_mode[m]["random_drop_max"][TASK] for m in MODES}
    line = (f"{TASK} task drop {' / '.join(f'{fmt(drop[m])} ({m})' for m in MODES)} vs random sets' max "
            f"{' / '.join(fmt(top[m]) for m in MODES)}; beats {' / '.join(f'{share[m]:.0%}' for m in MODES)} "
            f"of {draws} sets")
    controls = {f"random_{m}": {"drop_median": per_mode[m]["random_drop_median"][TASK], "drop_max": top[m]}
                for m in MODES}
    return Result(numbers, passed, ["feature_use_ablation.png"], controls=controls, summary=line, note=
                  f"Accuracy drop = unablated - ablated accuracy on {images} held-out images; the curve task "
                  f"applies to {int((labels[TASK] != IGNORE).sum())} of them. Mean ablation uses per-position "
                  f"means over 256 training-world images. Random sets: {draws} seeded draws of {len(detectors)} "
                  f"of the {width - len(detectors)} non-detector units. Other tasks are reported, not judged "
                  f"(the detectors' ablation is not specific to the curve task if it costs shape as much: shape "
                  f"drop zero {per_mode['zero']['detector_drop']['shape']:.3f}, mean "
                  f"{per_mode['mean']['detector_drop']['shape']:.3f}).")


CLAIM = Claim(
    name="ablating-curve-detectors",
    paper="Curve Detectors (Cammarata et al., Distill 2020)",
    statement="ablating mixed3b's curve detectors costs the shapes organism's curve task more accuracy than "
              "ablating random sets of its other units of the same size",
    criterion=f"in both zero and mean ablation, the curve task's held-out accuracy drops more with the curve "
              f"detectors ablated than with >= {MIN_SHARE:.0%} of >= 20 seeded random same-size sets of "
              f"non-detector units",
    check=check,
)
