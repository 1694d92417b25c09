"""Claims (Zoom In, Olah et al. 2020, universality; Curve Detectors, Cammarata et al. 2020): the same features
form in networks of different architectures trained on the same data — curve detectors in particular were found
across architectures.  Checked on three organisms trained on the shapes world by the same recipe
(``shapes_recipe``, multi-task loss, batch norm folded afterwards): ``shapes`` (InceptionV1-style),
``shapes-vgg`` (plain 3x3 conv stack with max-pools) and ``shapes-resnet`` (basic blocks), each against its
*untrained twin* (same architecture, random weights, seed 0).

Compared layers (``LAYERS``): ``shapes:mixed3b``, ``shapes-vgg:conv3_2``, ``shapes-resnet:block3`` — each the last
layer with a 16x16 map at a 64-px input, with receptive fields of 29–45, 30 and 39 px.  All measures use radial
tuning curves (``ORIENTATIONS`` orientations, five radii, max over radius, read where each unit responds most)
and the family functions of ``vision.families.architectures``.

Criteria, stated before the run:

- ``curve-detectors-in-three-architectures``: in each of the three architectures, the compared layer has at least
  ``MIN_DETECTORS`` curve detectors (``curve_detectors``, default criteria), their share of the layer's units
  exceeds the untrained twin's share by at least ``MIN_SHARE_GAP``, and their preferred orientations cover at
  least ``MIN_COVERAGE`` of 8 sectors.  High-low frequency detectors at the same layers (``classify_units``) are
  counted for trained and untrained nets and reported, not judged (the high-low finder is validated at mixed3a,
  one layer earlier, in ``reproduce.high_low``).
- ``curve-detectors-match-across-architectures``: shapes' mixed3b curve detectors are matched by tuning curve
  (``tuning_match``: correlation >= ``TUNE_CORR``, preferred orientations within ``MAX_DIFF`` degrees) to units of
  each other architecture's compared layer; control: the same detectors matched to the untrained twin's units of
  that layer.  Criterion: for both the VGG and the ResNet, matched share minus the control's share >=
  ``MIN_MATCH_GAP``.  The reverse directions (each other architecture's detectors matched into shapes and into
  untrained shapes) are reported, not judged.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from mechscope.plots import new_figure, save_figure
from mechscope.reproduce.claims import Claim, Result, fmt
from mechscope.vision.families.architectures import compare_tunings, family_census, layer_tunings
from mechscope.zoo.registry import load

LAYERS = {"shapes": "mixed3b", "shapes-vgg": "conv3_2", "shapes-resnet": "block3"}
REFERENCE = "shapes"
ORIENTATIONS = 72
# Thresholds: MIN_DETECTORS (5) and MIN_COVERAGE (6 of 8 sectors) stated margins, looser than
# curve_detectors' for smaller layers; MIN_SHARE_GAP (0.1) the curve-detector share above the untrained twin's
# (the control); TUNE_CORR / MAX_DIFF as universality's; MIN_MATCH_GAP (0.3) the matched share above the
# untrained twin's.
MIN_DETECTORS, MIN_SHARE_GAP, MIN_COVERAGE = 5, 0.1, 6
TUNE_CORR, MAX_DIFF, MIN_MATCH_GAP = 0.8, 22.5, 0.3


@lru_cache(maxsize=8)
def _tunings(name: str, trained: bool, n_orientations: int = ORIENTATIONS):
    """Radial and high-low tunings of ``name``'s compared layer, trained or untrained (seed 0); once per process."""
    net = load(name, device="cpu") if trained else load(name, weights="random", seed=0, device="cpu")
    return layer_tunings(net, LAYERS[name], n_orientations=n_orientations)


def _census(n_orientations: int) -> dict[str, dict]:
    out = {}
    for name in LAYERS:
        t, u = (family_census(*_tunings(name, trained, n_orientations)) for trained in (True, False))
        out[name] = {"layer": LAYERS[name], "trained": {k: v for k, v in t.items() if k != "curve_units"},
                     "untrained": {k: v for k, v in u.items() if k != "curve_units"},
                     "curve_share_gap": round(t["curve_share"] - u["curve_share"], 3)}
    return out


def check_census(out: Path, n_orientations: int = ORIENTATIONS) -> Result:
    census = _census(n_orientations)
    ok = {name: (c["trained"]["curve_detectors"] >= MIN_DETECTORS and c["curve_share_gap"] >= MIN_SHARE_GAP
                 and c["trained"]["curve_coverage_of_8"] >= MIN_COVERAGE) for name, c in census.items()}
    fig, ax = new_figure(figsize=(5.5, 3))
    at = range(len(census))
    for off, key, label in ((-0.2, "trained", "trained"), (0.2, "untrained", "untrained twin")):
        ax.bar([i + off for i in at], [c[key]["curve_share"] for c in census.values()], 0.4, label=label)
    ax.set_xticks(list(at), [f"{n}\n{c['layer']}" for n, c in census.items()], fontsize=7)
    ax.set_ylabel("share of units that are curve detectors", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "architectures_census.png", dpi=80, tight=False)
    summary = "curve detectors, trained vs untrained twin: " + "; ".join(
        f"{n} {c['trained']['curve_detectors']} ({c['trained']['curve_coverage_of_8']}/8 sectors) vs "
        f"{c['untrained']['curve_detectors']}" for n, c in census.items())
    controls = {n: {"untrained_curve_detectors": c["untrained"]["curve_detectors"],
                    "untrained_curve_share": c["untrained"]["curve_share"]} for n, c in census.items()}
    return Result({"census": census, "passes": ok, "orientations": n_orientations}, all(ok.values()),
                  ["architectures_census.png"], controls=controls, summary=summary, note=
                  "Curve detectors by tuning.curve_detectors (curves >= 1.5x lines, FWHM <= 150 deg, one-sided, peak "
                  "> 10% of the layer's strongest) at the last 16x16 layer of each architecture; the untrained twin is "
                  "the same architecture with seed-0 random weights. High-low detectors reported, not judged. Not "
                  "checked: other layers, other families (line, colour), other worlds than shapes.")


def check_match(out: Path, n_orientations: int = ORIENTATIONS) -> Result:
    ref = _tunings(REFERENCE, True, n_orientations)
    others = [n for n in LAYERS if n != REFERENCE]
    numbers, comparisons = {}, {}
    for name in others:
        c = compare_tunings(ref, _tunings(name, True, n_orientations), _tunings(name, False, n_orientations),
                            min_corr=TUNE_CORR, max_diff=MAX_DIFF)
        back = compare_tunings(_tunings(name, True, n_orientations), ref, _tunings(REFERENCE, False, n_orientations),
                               min_corr=TUNE_CORR, max_diff=MAX_DIFF)
        comparisons[name] = c
        m, mc = c.match.to_json(), c.match_control.to_json()
        numbers[name] = {
            "layer": LAYERS[name], "shapes_detectors": m["detectors"],
            "share_matched": m["share_matched"], "share_matched_untrained": mc["share_matched"],
            "gap": round(c.gap, 3), "matches_that_are_curve_detectors": m["matches_that_are_curve_detectors"],
            "median_best_corr": m["median_best_corr"], "median_best_corr_untrained": mc["median_best_corr"],
            "reverse": {"detectors": back.match.to_json()["detectors"],
                        "share_matched_in_shapes": round(back.match.share, 3),
                        "share_matched_in_untrained_shapes": round(back.match_control.share, 3)},
        }
    fig, axes = new_figure(1, len(others), figsize=(4.5 * len(others), 3))
    for ax, name in zip(axes, others, strict=True):
        comparisons[name].plot(ax, names=("shapes", name))
    fig.tight_layout()
    save_figure(fig, out / "architectures_match.png", dpi=80, tight=False)
    passed = all(numbers[n]["shapes_detectors"] >= MIN_DETECTORS and numbers[n]["gap"] >= MIN_MATCH_GAP
                 for n in others)
    summary = "shapes curve detectors matched, trained vs untrained twin: " + "; ".join(
        f"{n} {fmt(v['share_matched'])} vs {fmt(v['share_matched_untrained'])}" for n, v in numbers.items())
    controls = {n: {"share_matched_untrained": v["share_matched_untrained"],
                    "median_best_corr_untrained": v["median_best_corr_untrained"]} for n, v in numbers.items()}
    return Result({"matches": numbers, "criteria": {"min_corr": TUNE_CORR, "max_diff_deg": MAX_DIFF},
                   "orientations": n_orientations}, passed, ["architectures_match.png"], controls=controls,
                  summary=summary, note=
                  "Each curve detector of shapes:mixed3b matched to the unit of the other network's compared layer "
                  "whose radial tuning curve correlates best with its own (no activation maps are compared: the "
                  "architectures differ); control: the same detectors matched into the untrained twin's layer. "
                  "Not checked: matches by dataset activations or weights, layers other than the 16x16 ones.")


CLAIMS = (
    Claim(
        name="curve-detectors-in-three-architectures",
        paper="Curve Detectors (Cammarata et al., Distill 2020) and Zoom In (Olah et al., Distill 2020), universality",
        statement="curve detectors form in an InceptionV1-style net, a plain VGG-style stack and a small ResNet "
                  "trained on the shapes world, beyond their untrained twins",
        criterion=f"at shapes:mixed3b, shapes-vgg:conv3_2 and shapes-resnet:block3: >= {MIN_DETECTORS} curve "
                  f"detectors, their share of units exceeds the untrained twin's by >= {MIN_SHARE_GAP}, preferred "
                  f"orientations cover >= {MIN_COVERAGE}/8 sectors",
        check=check_census,
    ),
    Claim(
        name="curve-detectors-match-across-architectures",
        paper="Zoom In: An Introduction to Circuits (Olah et al., Distill 2020), universality across architectures",
        statement="the shapes organism's curve detectors have tuning-curve twins in a VGG-style net and a ResNet "
                  "trained on the same world, far more often than in the same architectures untrained",
        criterion=f"for shapes-vgg:conv3_2 and shapes-resnet:block3: the share of shapes' mixed3b curve detectors "
                  f"(>= {MIN_DETECTORS}) with a unit of tuning correlation >= {TUNE_CORR} and preferred orientation "
                  f"within {MAX_DIFF} deg exceeds the share in the untrained twin by >= {MIN_MATCH_GAP}",
        check=check_match,
    ),
)
