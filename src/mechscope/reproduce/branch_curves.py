"""Claim (Branch Specialization, Voss et al., Distill 2021): in InceptionV1 the curve detectors of mixed3b
cluster in its 5x5 branch — far more of them sit in ``mixed3b_5x5`` than a random placement of as many units
among the block's branches would put there.  Checked on the shapes organism's mixed3b.

Measurement: mixed3b's curve detectors (``tuning.curve_detectors`` on ``radial_tuning_curve``, the criteria
of the curve-detectors claim, at 72 orientations: on this organism 72, 360 and 720 give the same 47 units) are counted per branch (``branches.branch_specialization``: 1x1, 3x3, 5x5,
pool_reduce, in concatenation order), each count against the hypergeometric expectation ``flagged * width /
208`` and its upper-tail probability.

Criterion, stated before the measurement: the 5x5 branch holds **more** curve detectors than expected with
hypergeometric p < ``ALPHA`` (0.05).  Controls: (1) the same count for the untrained network's "curve
detectors" (same criteria), which must not pass the same test; (2) ``DRAWS`` random sets of mixed3b units of
the same size as the trained detector set, where the share passing the test is the test's false-positive rate
(at most ``ALPHA`` for a sound test; reported, and required to be <= ``ALPHA``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mechscope.plots import new_figure, save_figure
from mechscope.reproduce.claims import Claim, Result, fmt
from mechscope.reproduce.organism import shapes_tuning
from mechscope.vision.families.branches import BranchSplit, branch_specialization
from mechscope.vision.families.tuning import curve_detectors
from mechscope.zoo.registry import load

# ALPHA (0.05): the conventional level of the hypergeometric test, also the bound on the random-sets control's
# false-positive rate.
LAYER, BRANCH, ALPHA, DRAWS = "mixed3b", "5x5", 0.05, 200


def _test(split: BranchSplit) -> dict:
    """Counts, expectations and p-values per branch, and whether ``BRANCH`` passes (more than expected, p <
    ``ALPHA``)."""
    total = sum(split.widths)
    rows = {b: {"width": w, "count": c, "expected": round(split.flagged * w / total, 2), "p_value": round(p, 4)}
            for b, w, c, p in zip(split.branches, split.widths, split.counts, split.p_values, strict=True)}
    row = rows[BRANCH]
    return {"detectors": split.flagged, "branches": rows,
            "passes": bool(row["count"] > row["expected"] and row["p_value"] < ALPHA)}


def check(out: Path, n_orientations: int = 72, draws: int = DRAWS) -> Result:
    net = load("shapes", device="cpu")
    found = curve_detectors(shapes_tuning(LAYER, n_orientations))
    trained = _test(branch_specialization(net, LAYER, {u: True for u in found.units}))
    untrained_net = load("shapes", weights="random", seed=0, device="cpu")
    fake = curve_detectors(shapes_tuning(LAYER, n_orientations, weights="random", seed=0))
    untrained = _test(branch_specialization(untrained_net, LAYER, {u: True for u in fake.units}))
    width = sum(v["width"] for v in trained["branches"].values())
    gen = torch.Generator().manual_seed(0)
    random_pass = sum(
        _test(branch_specialization(net, LAYER, {int(u): True for u in torch.randperm(width, generator=gen)
                                                 [:len(found.units)]}))["passes"] for _ in range(draws))
    false_positive = random_pass / draws if draws else None

    fig, ax = new_figure(figsize=(5, 3))
    names = list(trained["branches"])
    xs = torch.arange(len(names)).numpy()
    ax.bar(xs - 0.2, [trained["branches"][b]["count"] for b in names], 0.4, label="curve detectors")
    ax.bar(xs + 0.2, [trained["branches"][b]["expected"] for b in names], 0.4, label="expected by chance")
    ax.set_xticks(xs, [f"{LAYER}_{b}" for b in names], fontsize=7)
    ax.set_ylabel("units")
    ax.set_title(f"{LAYER}: {len(found.units)} curve detectors by branch", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "branch_curves.png", dpi=80, tight=False)

    numbers = {"layer": LAYER, "branch": BRANCH, "alpha": ALPHA, "orientations": n_orientations,
               "trained": trained, "untrained_control": untrained,
               "random_sets_control": {"draws": draws, "set_size": len(found.units),
                                       "share_passing": false_positive}}
    passed = (trained["passes"] and not untrained["passes"]
              and (false_positive is None or false_positive <= ALPHA))
    t, u = trained["branches"][BRANCH], untrained["branches"][BRANCH]
    controls = {"untrained_branch": u, "untrained_passes": untrained["passes"],
                "random_sets_share_passing": false_positive}
    summary = (f"{t['count']} of {trained['detectors']} detectors in {LAYER}_{BRANCH} (expected {fmt(t['expected'])}, "
               f"p {fmt(t['p_value'])}); untrained: {u['count']} of {untrained['detectors']} (p {fmt(u['p_value'])}); "
               f"random sets pass {fmt(false_positive)}")
    return Result(numbers, passed, ["branch_curves.png"], controls=controls, summary=summary, note=
                  "Curve detectors as in the curve-detectors claim (radial tuning, one-sided, >= 1.5x lines). "
                  "p_value: hypergeometric probability of at least that many detectors in a random draw of the "
                  "branch's width from the block's 208 units. Controls: the untrained network's detectors "
                  f"under the same test, and {draws} random unit sets of the trained set's size "
                  "(share_passing: the test's false-positive rate).")


CLAIM = Claim(
    name="curve-detectors-in-5x5-branch",
    paper="Branch Specialization (Voss et al., Distill 2021)",
    statement=f"{LAYER}'s curve detectors cluster in its {BRANCH} branch",
    criterion=f"more curve detectors in {LAYER}_{BRANCH} than the hypergeometric expectation with p < {ALPHA}; "
              f"the untrained network's detectors do not pass, and random unit sets of the same size pass in "
              f"<= {ALPHA:.0%} of {DRAWS} draws",
    check=check,
)
