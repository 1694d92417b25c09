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
  partner map (input channels assumed rotation-invariant).  Weights and partners are computed at a 65-px input
  (``SIZE``): at 64 px the stride-2 ``conv2d0`` and ``maxpool1`` pad one pixel more after than before (TF SAME), so
  mixed3a's grid does not rotate onto itself and turned-back maps are misaligned by a fraction of a cell
  (``rotation_grid_error``: ~0.5 at 64 px, 0 at sizes 4k + 1); ``rotation_partners`` pads to such a size anyway.

A third measurement, the Curve Detectors paper's curve -> curve circuit ("neighbouring orientations excite,
opposite ones inhibit"): mixed3a's curve detectors (found by the same ``curve_detectors`` criteria, at
``PROFILE_ORIENTATIONS``) -> mixed3b's, the expanded weight summed over the 5 x 5 window, averaged over pairs in
``BINS`` bins of the circular difference of preferred orientations (``orientation_weight_profile``).

Criteria, fixed before the numbers were seen:

* tuning: median best-shift correlation between detectors >= ``MIN_TUNING``;
* weights: median partnered cosine of quarter-turn pairs >= ``MIN_WEIGHTS`` and above the control's median;
* profile: the nearest bin's (|difference| < 30 deg) mean weight > 0 > the opposite bin's (>= 150 deg), and the
  contrast (nearest - opposite, divided by the mean |weight| over all pairs) larger than the control's.

The profile's control is the untrained organism (``load("shapes", weights="random", seed=CONTROL_SEED)``) measured
the same way; it has almost no curve detectors by the strict criteria, so its units are the responsive units of
each layer (peak above 10 % of the layer's strongest) whose radial tuning curve prefers curves at all
(``curve_preference >= 1``), at most as many per layer as the trained organism has detectors, most
curve-preferring first, each at its own preferred orientation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mechscope.data.shapes import ShapesDataset
from mechscope.plots import new_figure, save_figure
from mechscope.reproduce.claims import Claim, Result, fmt
from mechscope.reproduce.organism import shapes_tuning
from mechscope.vision.families.equivariance import (orientation_weight_profile, partnered_rotation_score,
                                                   rotation_grid_error, rotation_partners, shift_scores)
from mechscope.vision.families.tuning import curve_detectors, radial_tuning_curve
from mechscope.vision.circuits.weights import expanded_weights
from mechscope.zoo.registry import load

LAYER, INPUT = "mixed3b", "mixed3a"
# Thresholds: TOLERANCE (15 deg) a stated margin on "a quarter turn apart"; MIN_PARTNER / MIN_TUNING (0.8) the
# tuning correlation read as "the same tuning"; MIN_WEIGHTS (0.5) a cosine halfway to identical rotated
# weights, also compared with the inputs-fixed control's median.
TOLERANCE, MIN_PARTNER = 15.0, 0.8
MIN_TUNING, MIN_WEIGHTS = 0.8, 0.5
SIZE, CENTRE = 65, 8          # 65 px: mixed3a and mixed3b are 17 x 17 and rotate onto themselves about cell 8
PROFILE_ORIENTATIONS, BINS, CONTROL_SEED = 72, 6, 0


def _angle(d: torch.Tensor) -> torch.Tensor:
    """Distance on the circle, degrees."""
    return (d + 180) % 360 - 180


def _window(net: torch.nn.Module, units: list[int]) -> torch.Tensor:
    """Expanded weights mixed3a -> each mixed3b unit at the centre of the 65-px map, the 5 x 5 window it reads:
    ``[len(units), C_mixed3a, 5, 5]``."""
    c = CENTRE
    return torch.stack([expanded_weights(net, INPUT, f"{LAYER}:{u}", SIZE, crop=False)[:, c - 2: c + 3, c - 2: c + 3]
                        for u in units])


def _profile(window: torch.Tensor, units_a: list[int], pref_a: list[float], pref_b: list[float]) -> dict:
    """Curve -> curve weight profile: ``window [B, C_mixed3a, 5, 5]`` (``_window`` of the mixed3b units whose
    preferred orientations are ``pref_b``) read at the mixed3a units ``units_a`` (preferred ``pref_a``), summed
    over the window, binned by orientation difference (``orientation_weight_profile``)."""
    counts = {INPUT: len(units_a), LAYER: len(pref_b)}
    if not units_a or not pref_b:
        return {"units": counts, "centres": [], "mean": [], "count": [], "near": None, "opposite": None,
                "contrast": None}
    w = window[:, units_a].sum((-2, -1))                                # [B, A]
    centres, mean, count = orientation_weight_profile(w, torch.tensor(pref_a), torch.tensor(pref_b), bins=BINS)
    scale = float(w.abs().mean())
    near, opp = float(mean[0]), float(mean[-1])
    contrast = (near - opp) / scale if scale > 0 and near == near and opp == opp else None
    return {"units": counts, "centres": centres.tolist(), "mean": [round(float(v), 5) for v in mean],
            "count": count.tolist(), "near": round(near, 5), "opposite": round(opp, 5),
            "contrast": None if contrast is None else round(contrast, 3)}


def check(out: Path, n_orientations: int = 180, images: int = 512,
          profile_orientations: int = PROFILE_ORIENTATIONS) -> Result:
    net = load("shapes", device="cpu")
    tuning = shapes_tuning(LAYER, n_orientations)
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
    x = next(iter(ShapesDataset(images, size=SIZE, seed=5).batches(images)))[1]
    partners = {q: rotation_partners(net, INPUT, x, q) for q in (1, 2, 3)}
    w = _window(net, units)
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

    weights_ok = (weight_median is not None and control_median is not None and weight_median >= MIN_WEIGHTS
                  and weight_median > control_median)

    # curve -> curve weights by orientation difference, trained vs untrained
    early = curve_detectors(radial_tuning_curve(net, INPUT, n_orientations=profile_orientations, progress=False))
    trained = _profile(w, early.units, early.preferred, found.preferred)
    cap = trained["units"]

    def loose(model: torch.nn.Module, layer: str) -> tuple[list[int], list[float]]:
        t = radial_tuning_curve(model, layer, n_orientations=profile_orientations, progress=False)
        peak = t.responses.max(1).values
        ok = (t.curve_preference >= 1.0) & (peak > 0.1 * float(peak.max()))
        idx = sorted(torch.nonzero(ok)[:, 0].tolist(), key=lambda i: -float(t.curve_preference[i]))[:cap[layer]]
        return [t.channels[i] for i in idx], [float(t.preferred[i]) for i in idx]

    untrained = load("shapes", weights="random", seed=CONTROL_SEED, device="cpu")
    (ua, pa), (ub, pb) = loose(untrained, INPUT), loose(untrained, LAYER)
    control = _profile(_window(untrained, ub) if ub else torch.zeros(0), ua, pa, pb)
    profile_ok = (trained["near"] is not None and trained["opposite"] is not None
                  and trained["near"] > 0 > trained["opposite"] and trained["contrast"] is not None
                  and (control["contrast"] is None or trained["contrast"] > control["contrast"]))

    fig, axes = new_figure(1, 3, figsize=(13, 3))
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
    for prof, label in ((trained, "trained"), (control, f"untrained (seed {CONTROL_SEED})")):
        if prof["mean"] and prof["contrast"] is not None:
            scale = max(abs(v) for v in prof["mean"] if v == v) or 1.0
            axes[2].plot(prof["centres"], [v / scale for v in prof["mean"]], marker="o", label=label)
    axes[2].axhline(0, color="k", lw=0.5)
    axes[2].set_xlabel("|preferred orientation difference| (deg)")
    axes[2].set_ylabel("mean summed weight / max |bin|")
    axes[2].set_title(f"{INPUT} -> {LAYER} curve -> curve weights")
    axes[2].legend(fontsize=7)
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
        "input_size": SIZE, "mixed3a_grid_error_at_64px": round(rotation_grid_error(net, INPUT, 64), 3),
        "mixed3a_grid_error_at_65px": round(rotation_grid_error(net, INPUT, SIZE), 6),
        "profile": trained, "profile_control_untrained": control,
        "verdicts": {"tuning": tuning_median >= MIN_TUNING, "weights": bool(weights_ok),
                     "profile": bool(profile_ok)},
    }
    passed = tuning_median >= MIN_TUNING and bool(weights_ok) and bool(profile_ok)
    summary = (f"tuning corr {fmt(tuning_median)}; weight cosine {fmt(weight_median)} vs inputs-fixed "
               f"{fmt(control_median)}; near-minus-opposite contrast {fmt(trained['contrast'])} vs untrained "
               f"{fmt(control['contrast'])}")
    controls = {"weights_control_median_cosine": numbers["weights_control_median_cosine"],
                "untrained_contrast": control["contrast"], "untrained_near": control["near"],
                "untrained_opposite": control["opposite"]}
    return Result(numbers, passed, ["curve_family.png"], controls=controls, summary=summary, note=
                  "Tuning curves are compared under circular shift; weights are expanded weights from mixed3a "
                  f"(linearized model, 5x5 window) for pairs whose preferences differ by a quarter turn "
                  f"(+/- {TOLERANCE:g} deg), with each mixed3a unit replaced by the unit it turns into (estimated "
                  f"from {images} {SIZE}-px shapes-world images turned by exact quarter turns, a grid that rotates onto "
                  f"itself). Curve -> curve profile: {INPUT} -> {LAYER} curve detectors' summed 5x5 expanded weight "
                  f"by |orientation difference| in {BINS} bins, against the untrained organism.")


CLAIM = Claim(
    name="curve-family-rotated-copies",
    paper="Curve Detectors (Cammarata et al., Distill 2020); Naturally Occurring Equivariance (Olah et al., 2020)",
    statement="mixed3b's curve detectors are rotated copies of one another, in tuning and in weights, and read "
              "mixed3a's curve detectors of neighbouring orientations positively and opposite ones negatively",
    criterion=f"median best-shift tuning correlation between detectors >= {MIN_TUNING}; median cosine between "
              f"a quarter-turn pair's weights (inputs mapped to their rotated partners, {SIZE}-px grid) >= "
              f"{MIN_WEIGHTS} and above the inputs-fixed control's; summed curve -> curve weight: nearest "
              f"orientation bin > 0 > opposite bin, with a near-minus-opposite contrast above the untrained "
              f"organism's",
    check=check,
)
