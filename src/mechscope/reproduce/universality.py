"""Claim (Zoom In, Olah et al. 2020, "universality"): two networks trained alike learn many of the same
features.  Checked on the bundled organisms trained with seeds 0 and 1, always against two *untrained* networks
of the same architecture (random weights, seeds 0 and 1), since untrained early layers match each other as well
as trained ones do (flat colour regions drive every unit alike).

Two measures, criteria stated before the run:

- **Units**: each unit of seed 0 is matched to its most correlated unit of seed 1 (activation correlation over
  every position of ``IMAGES`` images of the shapes world, ``activation_correlation``); a layer's share is the
  share of units whose best match reaches ``THRESHOLD``.  The same for the untrained pair.  Criterion: at
  ``mixed3a`` and ``mixed3b`` (where trained features are more than colour) the trained share exceeds the
  untrained share by at least ``MIN_GAP``.  conv2d0..conv2d2 are reported, not judged.
- **Family**: seed 0's curve detectors in ``mixed3b`` (``curve_detectors`` on radial tuning curves) are matched to
  seed 1's ``mixed3b`` units by the shape of their tuning curves (``tuning_match``); a detector is matched when
  the tuning correlation is at least ``TUNE_CORR`` and the preferred orientations differ by at most
  ``MAX_DIFF`` degrees.  Control: the same detectors matched to the units of the untrained network (seed 0).
  Criterion: at least ``MIN_DETECTORS`` detectors and a matched share exceeding the control's by
  ``MIN_FAMILY_GAP``.  The untrained pair's own detector counts are reported.
"""

from __future__ import annotations

from pathlib import Path

from mechscope.data.shapes import ShapesDataset
from mechscope.plots import new_figure, save_figure
from mechscope.reproduce.claims import Claim, Result, fmt
from mechscope.reproduce.organism import shapes_tuning
from mechscope.vision.families.tuning import curve_detectors
from mechscope.vision.families.universality import activation_correlations, tuning_match, universality
from mechscope.zoo.registry import load

LAYERS = ("conv2d0", "conv2d1", "conv2d2", "mixed3a", "mixed3b")
JUDGED = ("mixed3a", "mixed3b")
# Thresholds: THRESHOLD (0.7) the activation correlation read as "the same unit" (Li et al.'s matching, a
# stated margin); MIN_GAP (0.2) the trained pair's share of matched units above the untrained pair's (the
# control); TUNE_CORR / MAX_DIFF: the tuning match of curve_family (0.8) within a 22.5 deg sector (1/16 turn);
# MIN_DETECTORS (5) and MIN_FAMILY_GAP (0.3) stated margins against the untrained pair.
THRESHOLD, MIN_GAP, IMAGES, WORLD_SEED = 0.7, 0.2, 1024, 5
FAMILY_LAYER, TUNE_CORR, MAX_DIFF, MIN_DETECTORS, MIN_FAMILY_GAP = "mixed3b", 0.8, 22.5, 5, 0.3


def _layer_shares(a, b, batches: list, layers: tuple[str, ...]) -> dict[str, dict]:
    corr = activation_correlations(a, b, [(k, k) for k in layers], batches, progress=False)
    out = {}
    for layer in layers:
        u = universality(corr[(layer, layer)], THRESHOLD)
        out[layer] = {"share_matched": round(u.share, 3), "median_best_corr": round(float(u.best_corr.median()), 3)}
    return out


def check(out: Path, images: int = IMAGES, n_orientations: int = 72, layers: tuple[str, ...] = LAYERS) -> Result:
    a, b = load("shapes", device="cpu"), load("shapes-seed1", device="cpu")
    r0, r1 = (load("shapes", weights="random", seed=s, device="cpu") for s in (0, 1))
    batches = list(ShapesDataset(images, seed=WORLD_SEED).batches(128))   # rendered once, read by both pairs
    trained, untrained = _layer_shares(a, b, batches, layers), _layer_shares(r0, r1, batches, layers)
    gaps = {k: round(trained[k]["share_matched"] - untrained[k]["share_matched"], 3) for k in layers}

    nets = {"seed0": ("shapes", "bundled", 0), "seed1": ("shapes-seed1", "bundled", 0),
            "untrained0": ("shapes", "random", 0), "untrained1": ("shapes", "random", 1)}
    tune = {name: shapes_tuning(FAMILY_LAYER, n_orientations, *net) for name, net in nets.items()}
    found = curve_detectors(tune["seed0"])
    rows = [tune["seed0"].channels.index(u) for u in found.units]
    curves = tune["seed0"].responses[rows]
    to_seed1 = tuning_match(curves, tune["seed1"].responses, tune["seed0"].orientations)
    to_untrained = tuning_match(curves, tune["untrained0"].responses, tune["seed0"].orientations)
    seed1_detectors = set(curve_detectors(tune["seed1"]).units)
    family = {
        "layer": FAMILY_LAYER, "seed0_curve_detectors": len(found.units),
        "seed1_curve_detectors": len(seed1_detectors),
        "untrained_pair_curve_detectors": [len(curve_detectors(tune[k]).units) for k in ("untrained0", "untrained1")],
        "share_matched_seed1": round(to_seed1.share(TUNE_CORR, MAX_DIFF), 3),
        "share_matched_untrained": round(to_untrained.share(TUNE_CORR, MAX_DIFF), 3),
        "matches_that_are_seed1_curve_detectors": sum(
            tune["seed1"].channels[int(m)] in seed1_detectors for m in to_seed1.best_match),
        "median_tuning_corr_seed1": round(float(to_seed1.best_corr.median()), 3) if rows else None,
        "median_tuning_corr_untrained": round(float(to_untrained.best_corr.median()), 3) if rows else None,
        "median_orientation_diff_seed1_deg": round(float(to_seed1.orientation_diff.median()), 1) if rows else None,
        "orientations": n_orientations,
    }
    family["gap"] = round(family["share_matched_seed1"] - family["share_matched_untrained"], 3)
    fig, (left, right) = new_figure(1, 2, figsize=(9, 3))
    at = range(len(layers))
    left.bar([i - 0.2 for i in at], [trained[k]["share_matched"] for k in layers], 0.4, label="seeds 0 / 1")
    left.bar([i + 0.2 for i in at], [untrained[k]["share_matched"] for k in layers], 0.4, label="untrained pair")
    left.set_xticks(list(at), list(layers), fontsize=7)
    left.set_ylabel(f"share matched at r >= {THRESHOLD}")
    left.legend(fontsize=7)
    for m, label in ((to_seed1, "to seed 1"), (to_untrained, "to untrained")):
        right.hist(m.best_corr.numpy(), bins=30, range=(-0.5, 1), alpha=0.6, label=label)
    right.axvline(TUNE_CORR, color="k", lw=0.8)
    right.set_xlabel(f"best tuning correlation of {FAMILY_LAYER} curve detectors", fontsize=8)
    right.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "universality.png", dpi=80, tight=False)

    judged = [k for k in JUDGED if k in gaps]
    passed = (bool(judged) and all(gaps[k] >= MIN_GAP for k in judged)
              and len(found.units) >= MIN_DETECTORS and family["gap"] >= MIN_FAMILY_GAP)
    summary = ("units matched, seeds vs untrained pair: "
               + ", ".join(f"{k} {fmt(trained[k]['share_matched'])}/{fmt(untrained[k]['share_matched'])}"
                           for k in judged)
               + f"; curve detectors matched {fmt(family['share_matched_seed1'])} vs untrained "
                 f"{fmt(family['share_matched_untrained'])}")
    controls = {"untrained_pair_share_matched": {k: untrained[k]["share_matched"] for k in layers},
                "family_share_matched_untrained": family["share_matched_untrained"],
                "family_median_tuning_corr_untrained": family["median_tuning_corr_untrained"],
                "untrained_pair_curve_detectors": family["untrained_pair_curve_detectors"]}
    return Result({"threshold": THRESHOLD, "images": images, "trained_pair": trained, "untrained_pair": untrained,
                   "gap_trained_minus_untrained": gaps, "family": family},
                  passed, ["universality.png"], controls=controls, summary=summary, note=
                  "Units: correlation over every spatial position of the 64-px images (the maps align: same "
                  "architecture); each unit of seed 0 matched to its most correlated unit of seed 1, and the same "
                  "between two untrained networks (seeds 0 and 1). Family: tuning curves over orientation (curves "
                  "at every orientation and five radii, max over radius) read where each unit responds most. Not "
                  "checked: other architectures (the paper compares different networks), families other than "
                  "curve detectors.")


CLAIM = Claim(
    name="seeds-share-early-units",
    paper="Zoom In: An Introduction to Circuits (Olah et al., Distill 2020), universality",
    statement="two seeds of the shapes organism share units and curve detectors beyond what untrained networks share",
    criterion=f"at {' and '.join(JUDGED)} the share of seed-0 units with a seed-1 unit of activation correlation >= "
              f"{THRESHOLD} exceeds the untrained pair's share by >= {MIN_GAP} ({IMAGES} images); and of seed 0's "
              f">= {MIN_DETECTORS} {FAMILY_LAYER} curve detectors, the share matched in seed 1 (tuning correlation "
              f">= {TUNE_CORR}, preferred orientations within {MAX_DIFF} deg) exceeds the share matched in an "
              f"untrained network by >= {MIN_FAMILY_GAP}",
    check=check,
)
