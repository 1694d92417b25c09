"""Claim (Curve Detectors 2020; Naturally Occurring Equivariance, Olah et al. 2020): curve detectors form a
rotation-equivariant family — their tuning curves are rotated copies, and so are their weights, once each input
channel is replaced by the channel it turns into.  Checked on the shapes organism's mixed3b curve detectors.

Two measurements, both on pairs of detectors:

* tuning: the best circular-shift correlation of two detectors' radial tuning curves (``shift_scores``), and
  whether that shift agrees with the difference of their preferred orientations;
* weights: for pairs whose preferred orientations differ by a quarter turn (within ``TOLERANCE``), the expanded
  weights from mixed3a (5 x 5 around the centre, through the branches) compared under that quarter turn with
  mixed3a's own rotation action estimated from data (``rotation_partners``; only input units whose partner
  correlates >= ``MIN_PARTNER``): ``partnered_rotation_score``.  The control is the same score without the
  partner map (input channels assumed rotation-invariant).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mechscope.data.shapes import ShapesDataset
from mechscope.plots import new_figure, save_figure
from mechscope.reproduce.claims import Claim, Result
from mechscope.vision.families.equivariance import partnered_rotation_score, rotation_partners, shift_scores
from mechscope.vision.families.tuning import curve_detectors, radial_tuning_curve
from mechscope.vision.circuits.weights import expanded_weights
from mechscope.zoo.registry import load

LAYER, INPUT = "mixed3b", "mixed3a"
TOLERANCE, MIN_PARTNER = 15.0, 0.8
MIN_TUNING, MIN_WEIGHTS = 0.8, 0.5


def _angle(d: torch.Tensor) -> torch.Tensor:
    """Distance on the circle, degrees."""
    return (d + 180) % 360 - 180


def check(out: Path, n_orientations: int = 360, images: int = 512) -> Result:
    net = load("shapes", device="cpu")
    tuning = radial_tuning_curve(net, LAYER, n_orientations=n_orientations, progress=False)
    found = curve_detectors(tuning)
    units = found.units
    pref = torch.tensor(found.preferred, dtype=torch.float64)
    curves = tuning.responses[[tuning.channels.index(u) for u in units]]

    # tuning: best shifted correlation for every pair, and the shift that achieves it
    s = shift_scores(curves, curves)                             # [D, D, O]
    best, k = s.max(-1)
    shift = k.double() * (360.0 / n_orientations)
    off = ~torch.eye(len(units), dtype=torch.bool)
    shift_error = _angle(shift - (pref[None, :] - pref[:, None])).abs()
    tuning_median = float(best[off].median())

    # weights: quarter-turn pairs, inputs mapped by mixed3a's rotation partners
    x = next(iter(ShapesDataset(images, seed=5).batches(images)))[1]
    partners = {q: rotation_partners(net, INPUT, x, q) for q in (1, 2, 3)}
    centre = 8  # mixed3b's map is 16 x 16 at 64 px; its units read a 5 x 5 window of mixed3a
    w = torch.stack([expanded_weights(net, INPUT, f"{LAYER}:{u}", 64, crop=False)
                     [:, centre - 2: centre + 3, centre - 2: centre + 3] for u in units])
    scores, controls, pairs = [], [], 0
    for i in range(len(units)):
        for j in range(len(units)):
            d = float(pref[j] - pref[i]) % 360
            for q in (1, 2, 3):
                if i != j and abs(_angle(torch.tensor(d - 90.0 * q))) <= TOLERANCE:
                    p = partners[q]
                    keep = p.matched(MIN_PARTNER)
                    scores.append(partnered_rotation_score(w[i], w[j], q, p.partner, keep))
                    controls.append(partnered_rotation_score(w[i], w[j], q, torch.arange(w.shape[1]), keep))
                    pairs += 1
    weight_median = float(torch.tensor(scores).median()) if scores else None
    control_median = float(torch.tensor(controls).median()) if controls else None

    fig, axes = new_figure(1, 2, figsize=(9, 3))
    grid = torch.arange(n_orientations) * (360.0 / n_orientations)
    for c, p0 in zip(curves, pref.tolist(), strict=True):
        roll = -int(round(p0 / (360.0 / n_orientations)))
        axes[0].plot((grid - 180).numpy(), (c / c.max().clamp_min(1e-12)).roll(roll + n_orientations // 2).numpy(),
                     lw=0.6, alpha=0.6)
    axes[0].set_xlabel("orientation - preferred (deg)")
    axes[0].set_ylabel("response / peak")
    axes[0].set_title(f"{len(units)} {LAYER} curve detectors, aligned")
    if scores:
        axes[1].hist([scores, controls], bins=20, label=["inputs turned (partners)", "inputs fixed (control)"])
        axes[1].legend(fontsize=7)
    axes[1].set_xlabel("cosine, weights of b vs a turned")
    axes[1].set_title("quarter-turn pairs")
    fig.tight_layout()
    save_figure(fig, out / "curve_family.png", dpi=80, tight=False)

    numbers = {
        "layer": LAYER, "curve_detectors": len(units),
        "tuning_median_shifted_corr": round(tuning_median, 3),
        "tuning_share_pairs_ge_0.8": round(float((best[off] >= MIN_TUNING).double().mean()), 3),
        "tuning_median_shift_error_deg": round(float(shift_error[off].median()), 1),
        "quarter_turn_pairs": pairs,
        "input_units_with_partner": {q: int(len(p.matched(MIN_PARTNER))) for q, p in partners.items()},
        "input_partner_median_corr": {q: round(float(p.corr.median()), 3) for q, p in partners.items()},
        "weights_median_cosine": None if weight_median is None else round(weight_median, 3),
        "weights_control_median_cosine": None if control_median is None else round(control_median, 3),
    }
    passed = (tuning_median >= MIN_TUNING and weight_median is not None and weight_median >= MIN_WEIGHTS)
    return Result(numbers, passed, ["curve_family.png"],
                  "Tuning curves are compared under circular shift; weights are expanded weights from mixed3a "
                  f"(linearized model, 5x5 window) for pairs whose preferences differ by a quarter turn "
                  f"(+/- {TOLERANCE:g} deg), with each mixed3a unit replaced by the unit it turns into (estimated "
                  f"from {images} shapes-world images turned by exact quarter turns).")


CLAIM = Claim(
    name="curve-family-rotated-copies",
    paper="Curve Detectors (Cammarata et al., Distill 2020); Naturally Occurring Equivariance (Olah et al., 2020)",
    statement="mixed3b's curve detectors are rotated copies of one another, in tuning and in weights",
    criterion=f"median best-shift tuning correlation between detectors >= {MIN_TUNING}, and median cosine between "
              f"a quarter-turn pair's weights (inputs mapped to their rotated partners) >= {MIN_WEIGHTS}",
    check=check,
)
