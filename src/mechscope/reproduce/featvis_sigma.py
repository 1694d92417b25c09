"""Claim (Feature Visualization, Olah et al. 2017; Curve Detectors 2020): optimized images drive a unit far beyond
anything in the dataset — in σ of the unit's activation distribution over the dataset.  Checked on the shapes
organism's mixed3b curve detectors."""

from __future__ import annotations

from pathlib import Path

import torch

from mechscope.capture import capture
from mechscope.data.shapes import ShapesDataset
from mechscope.images import grid, save_png
from mechscope.reproduce.claims import Claim, Result
from mechscope.reproduce.organism import shapes_tuning
from mechscope.vision.featvis.render import render_units
from mechscope.vision.evidence.stats import activation_stats
from mechscope.vision.families.tuning import curve_detectors
from mechscope.zoo.registry import load

LAYER, UNITS, MIN_SIGMA = "mixed3b", 8, 10.0


def check(out: Path, images: int = 2048, steps: int = 256) -> Result:
    net = load("shapes", device="cpu")
    stats = activation_stats(net, ShapesDataset(images, seed=11).batches(256), LAYER, progress=False)[LAYER]
    found = curve_detectors(shapes_tuning(LAYER, 72))
    step = max(1, len(found.units) // UNITS)
    units = found.units[::step][:UNITS]
    result = render_units(net, [f"{LAYER}:{u}" for u in units], size=64, steps=steps, seed=0, progress=False)
    with torch.no_grad():
        acts = capture(net, result.final, [LAYER])[LAYER]
    rows = {}
    for i, u in enumerate(units):
        peak = float(acts[i, u].amax())
        rows[f"{LAYER}:{u}"] = {"featvis_max": round(peak, 3), "dataset_max": round(float(stats.max[u]), 3),
                                "sigma": round(float(stats.sigma(u, peak)), 1)}
    sigmas = sorted(r["sigma"] for r in rows.values())
    median = sigmas[len(sigmas) // 2]
    save_png(grid(result.final, ncols=len(units)), out / "featvis_curve_detectors.png")
    above = sum(r["featvis_max"] > r["dataset_max"] for r in rows.values())
    return Result({"images": images, "steps": steps, "median_sigma": median, "above_dataset_max": above,
                   "units": rows}, median >= MIN_SIGMA, ["featvis_curve_detectors.png"],
                  "σ of the unit's activations over every position of the dataset images; the feature "
                  "visualization's activation is its spatial maximum (as dataset examples rank items).")


CLAIM = Claim(
    name="featvis-many-sigma",
    paper="Feature Visualization (Olah et al., Distill 2017); Curve Detectors (2020)",
    statement="feature visualizations of mixed3b curve detectors activate them many σ above the dataset mean",
    criterion=f"median over {UNITS} curve detectors of (featvis activation - dataset mean) / dataset std "
              f">= {MIN_SIGMA:g}",
    check=check,
)
