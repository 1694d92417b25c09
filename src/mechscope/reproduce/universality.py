"""Claim (Zoom In, Olah et al. 2020, "universality"): two networks trained alike learn many of the same
features; early layers most of all.  Checked on the bundled organisms trained with seeds 0 and 1."""

from __future__ import annotations

from pathlib import Path

from mechscope.data.shapes import ShapesDataset
from mechscope.reproduce.claims import Claim, Result
from mechscope.vision.families.universality import activation_correlation, universality
from mechscope.zoo.registry import load

LAYERS = ("conv2d0", "conv2d1", "conv2d2", "mixed3a", "mixed3b")
THRESHOLD, MIN_SHARE, IMAGES, WORLD_SEED = 0.8, 0.5, 1024, 5


def check(out: Path, images: int = IMAGES) -> Result:
    a, b = load("shapes", device="cpu"), load("shapes-seed1", device="cpu")
    data = ShapesDataset(images, seed=WORLD_SEED)
    shares = {}
    for layer in LAYERS:
        corr = activation_correlation(a, b, layer, layer, data.batches(128), progress=False)
        u = universality(corr, THRESHOLD)
        shares[layer] = {"share_matched": round(u.share, 3), "median_best_corr": round(float(u.best_corr.median()), 3),
                         "share_at": {t: round(float((u.best_corr >= t).double().mean()), 3) for t in (0.5, 0.7, 0.9)}}
    # the chance level: two untrained networks of the same architecture (seeds 0 and 1), first layer
    r0, r1 = (load("shapes", weights="random", seed=s, device="cpu") for s in (0, 1))
    chance = universality(activation_correlation(r0, r1, "conv2d0", "conv2d0", data.batches(128), progress=False),
                          THRESHOLD)
    passed = shares["conv2d0"]["share_matched"] > MIN_SHARE
    return Result({"threshold": THRESHOLD, "images": images, **shares,
                   "untrained_pair_conv2d0": {"share_matched": round(chance.share, 3),
                                              "median_best_corr": round(float(chance.best_corr.median()), 3)}},
                  passed, [],
                  "Correlation over every spatial position of the 64-px images (the two maps align: same "
                  "architecture); each unit of seed 0 is matched to its most correlated unit of seed 1. "
                  "share_at: the share matched at other thresholds; untrained_pair_conv2d0: the same measure "
                  "between two untrained networks (seeds 0 and 1), the level chance gives.")


CLAIM = Claim(
    name="seeds-share-early-units",
    paper="Zoom In: An Introduction to Circuits (Olah et al., Distill 2020), universality",
    statement="two seeds of the shapes organism share most of their first-layer units",
    criterion=f"more than {MIN_SHARE:.0%} of conv2d0 units of seed 0 have a unit of seed 1 with activation "
              f"correlation >= {THRESHOLD} (over {IMAGES} images of the shapes world)",
    check=check,
)
