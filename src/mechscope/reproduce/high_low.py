"""Claim (High-Low Frequency Detectors, Schubert et al., Distill 2021): a vision model has high-low frequency
detectors — units answering a boundary between fine and coarse texture, one-sidedly — and their input weights
split into two NMF factors, a high-frequency one on the boundary's high side and a low-frequency one on the other.
Checked on the shapes organism's mixed3a (the paper's layer in InceptionV1), against the same network untrained.

Detectors: ``detectors.classify_units`` with ``high_low_tuning`` (kind ``high_low``).  Split: the detectors'
expanded weights from conv2d2 (linearized model, through mixed3a's bottlenecks and maxpool1) are factored
together into two shared one-sided NMF factors (``nmf_factors``, as the paper does for the family); the factor
whose inputs prefer finer gratings (``frequency_preference``, loading-weighted) is the high-frequency factor.
A detector *splits* when, in its own spatial maps, the high-frequency factor's centroid lies at least
``MIN_OFFSET`` conv2d2 pixels further toward its preferred high side than the low-frequency factor's
(``factor_offset``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mechscope.plots import new_figure, save_figure
from mechscope.reproduce.claims import Claim, Result
from mechscope.vision.families.detectors import classify_units, frequency_preference, high_low_tuning
from mechscope.vision.circuits.nmf import factor_offset, nmf_factors
from mechscope.vision.families.tuning import radial_tuning_curve
from mechscope.vision.circuits.weights import expanded_weights
from mechscope.zoo.registry import load

LAYER, INPUT = "mixed3a", "conv2d2"
# Thresholds: MIN_DETECTORS (10) a stated margin; MIN_RATIO_TO_UNTRAINED (2x) the control: the untrained net's
# count by the same finder, doubled; MIN_OFFSET (1 conv2d2 px) the smallest shift a 2-px grid can show;
# MIN_SPLIT_SHARE (more than half) the paper's "the factors split" read as a majority of detectors.
MIN_DETECTORS, MIN_RATIO_TO_UNTRAINED, MIN_OFFSET, MIN_SPLIT_SHARE = 10, 2.0, 1.0, 0.5


def _detectors(net) -> tuple[list[dict], int]:
    """The layer's high-low detectors (``classify_units`` rows) and how many units the layer has."""
    tuning = radial_tuning_curve(net, LAYER, n_orientations=72, progress=False)
    rows = classify_units(tuning, high_low_tuning(net, LAYER, n_orientations=72))
    return [r for r in rows if r["kind"] == "high_low"], len(rows)


def _split(net, found: list[dict]) -> dict:
    """The two-factor NMF of the detectors' input weights and each detector's high-minus-low factor offset."""
    w = torch.stack([expanded_weights(net, INPUT, f"{LAYER}:{r['channel']}", 64, crop=False) for r in found])
    support = w.abs().amax((0, 1)) > 0
    rows, cols = support.any(1).nonzero()[:, 0], support.any(0).nonzero()[:, 0]
    w = w[:, :, int(rows[0]): int(rows[-1]) + 1, int(cols[0]): int(cols[-1]) + 1]
    nmf = nmf_factors(list(w), n=2)
    prefers = frequency_preference(net, INPUT)
    loading = nmf.components[:, : w.shape[1]].double()         # excitatory loadings on conv2d2's units
    fine = (loading * prefers.double()).sum(1) / loading.sum(1).clamp_min(1e-12)
    hi, lo = int(fine.argmax()), int(fine.argmin())
    offsets = torch.stack([factor_offset(nmf.factors[i, hi], r["preferred_deg"])
                           - factor_offset(nmf.factors[i, lo], r["preferred_deg"]) for i, r in enumerate(found)])
    return {"nmf": nmf, "offsets": offsets, "factor_fineness": fine, "high": hi}


def check(out: Path) -> Result:
    net, untrained = load("shapes", device="cpu"), load("shapes", weights="random", seed=0, device="cpu")
    (found, units), (found_untrained, _) = _detectors(net), _detectors(untrained)
    numbers: dict = {"layer": LAYER, "units": units, "high_low_detectors": len(found),
                     "untrained_high_low_detectors": len(found_untrained)}
    passed = False
    figures = []
    if found:
        split = _split(net, found)
        offsets = split["offsets"]
        share = float((offsets >= MIN_OFFSET).double().mean())
        numbers.update({
            "detectors": [f"{LAYER}:{r['channel']}" for r in found],
            "factor_input_fineness": [round(float(f), 3) for f in split["factor_fineness"]],
            "offsets_px": [round(float(o), 2) for o in offsets],
            "share_split": round(share, 3),
            "nmf_reconstruction_error": round(split["nmf"].error, 4),
        })
        if found_untrained:
            numbers["untrained_share_split"] = round(float((_split(untrained, found_untrained)["offsets"]
                                                            >= MIN_OFFSET).double().mean()), 3)
        passed = (len(found) >= MIN_DETECTORS and len(found) >= MIN_RATIO_TO_UNTRAINED * len(found_untrained)
                  and share > MIN_SPLIT_SHARE)
        factors = split["nmf"].factors                              # [D, 2, kh, kw]
        hi = split["high"]
        fig, axes = new_figure(2, len(found), figsize=(1.1 * len(found), 2.6), squeeze=False)
        for i, r in enumerate(found):
            for row, k in enumerate((hi, 1 - hi)):
                axes[row, i].imshow(factors[i, k].numpy(), cmap="magma")
                axes[row, i].set_xticks([])
                axes[row, i].set_yticks([])
            axes[0, i].set_title(f"{r['channel']}\n{r['preferred_deg']:.0f}°", fontsize=7)
        axes[0, 0].set_ylabel("high f", fontsize=7)
        axes[1, 0].set_ylabel("low f", fontsize=7)
        fig.tight_layout()
        save_figure(fig, out / "high_low_nmf.png", dpi=80, tight=False)
        figures.append("high_low_nmf.png")
    summary = f"{len(found)} high-low detectors"
    if found:
        summary += f", {numbers['share_split']:.0%} split"
    summary += f"; untrained net: {len(found_untrained)} detectors"
    controls = {"untrained_high_low_detectors": len(found_untrained)}
    if "untrained_share_split" in numbers:
        summary += f", {numbers['untrained_share_split']:.0%} split"
        controls["untrained_share_split"] = numbers["untrained_share_split"]
    return Result(numbers, passed, figures, controls=controls, summary=summary, note=
                  "Offsets in conv2d2 pixels (2 input pixels each) along each detector's preferred direction "
                  "(the direction of its high side). Figure: each detector's high-frequency factor (top) and "
                  "low-frequency factor (bottom); the preferred high side is the angle under the unit's number.")


CLAIM = Claim(
    name="high-low-detectors-split",
    paper="High-Low Frequency Detectors (Schubert et al., Distill 2021)",
    statement="mixed3a of the shapes organism has high-low frequency detectors whose input weights split into a "
              "high-frequency and a low-frequency NMF factor on opposite sides of the boundary",
    criterion=f">= {MIN_DETECTORS} high-low detectors and >= {MIN_RATIO_TO_UNTRAINED:g}x as many as untrained; "
              f"in more than {MIN_SPLIT_SHARE:.0%} of them the high-frequency factor lies >= {MIN_OFFSET:g} px "
              "further toward the high side",
    check=check,
)
