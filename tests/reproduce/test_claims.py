import json

import pytest
from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.errors import UnknownNameError
from mechscope.reproduce import curve_detectors, universality
from mechscope.reproduce.claims import Claim, Result, run_claims
from mechscope.reproduce.registry import claim_names, get_claims


def test_report_lists_each_claim_with_numbers_and_failures_as_results(tmp_path):
    ok = Claim("ok", "p", "s", "c", lambda out: Result({"x": 1}, True))
    bad = Claim("bad", "p", "s", "c", lambda out: Result({"x": 0}, False, note="did not hold"))
    rows = run_claims([ok, bad], tmp_path, progress=False)
    assert [r["passed"] for r in rows] == [True, False]
    report = (tmp_path / "report.md").read_text()
    assert "1 of 2 claims pass" in report and "## bad — FAIL" in report and "did not hold" in report
    assert json.loads((tmp_path / "results.json").read_text())[1]["numbers"] == {"x": 0}


def test_registry_and_unknown_names():
    assert claim_names() == ["curve-detectors-exist", "curve-family-rotated-copies", "featvis-many-sigma",
                             "high-low-detectors-split", "final-layer-banding", "banding-gap", "banding-rotated-data",
                             "banding-avg-x", "banding-max", "seeds-share-early-units",
                             "curve-detectors-in-three-architectures", "curve-detectors-match-across-architectures",
                             "curve-detectors-many-sigma", "curve-detectors-fill-colour-invariant",
                             "curve-detectors-prefer-curves-to-angles", "ablating-curve-detectors",
                             "circle-detectors", "curve-detectors-in-5x5-branch", "first-layer-branches-split-colour",
                             "first-layer-svd-colour-then-frequency", "sae-latents-more-monosemantic",
                             "handmade-curve-detector", "multimodal-units", "text-side-names-concept",
                             "typographic-attacks", "superordinate-units", "two-layer-induction-heads",
                             "k-composition-prev-to-induction", "induction-head-copies", "ablating-prev-token-head",
                             "one-layer-heads-copy", "icl-phase-change", "icl-no-phase-change-one-layer",
                             "dictionary-features-monosemantic", "tms-dense-keeps-two",
                             "tms-sparse-pentagon",
                             "tms-linear-no-superposition", "tms-sticky-dimensions", "tms-phase-boundary",
                             "tms-phase-diagram-3-2", "tms-correlated-pairs", "tms-privileged-basis",
                             "sae-recovers-toy-features"]
    assert len(get_claims(["all"])) == 43
    with pytest.raises(UnknownNameError, match="curve-detectors-exist"):
        get_claims(["curve-detector-exists"])


def test_curve_detector_claim_on_the_organism_against_the_untrained_net(tmp_path):
    result = curve_detectors.check(tmp_path, n_orientations=72)
    assert result.summary and result.controls and "|" not in result.summary
    n = result.numbers
    assert n["curve_detectors"] >= curve_detectors.MIN_DETECTORS and n["sectors_covered_of_8"] >= 7
    # the control is computed and compared: the untrained net, same finder, has (almost) none
    assert n["untrained_curve_detectors"] <= curve_detectors.MAX_UNTRAINED < n["curve_detectors"]
    assert result.passed is True and (tmp_path / result.figures[0]).exists()


def test_universality_claim_verdict_against_the_untrained_pair(tmp_path):
    result = universality.check(tmp_path, images=128, n_orientations=36, layers=("conv2d0", "mixed3a", "mixed3b"))
    assert result.summary and result.controls and "|" not in result.summary
    n, fam = result.numbers, result.numbers["family"]
    # the control is computed at every layer and for the family
    assert set(n["untrained_pair"]) == set(n["trained_pair"]) == {"conv2d0", "mixed3a", "mixed3b"}
    assert len(fam["untrained_pair_curve_detectors"]) == 2 and 0 <= fam["share_matched_untrained"] <= 1
    # conv2d0 cannot tell trained from untrained; mixed3a and the curve family can
    assert abs(n["gap_trained_minus_untrained"]["conv2d0"]) < 0.1
    assert n["gap_trained_minus_untrained"]["mixed3a"] >= universality.MIN_GAP
    assert fam["seed0_curve_detectors"] >= universality.MIN_DETECTORS and fam["gap"] >= universality.MIN_FAMILY_GAP
    # the verdict on the shipped organisms: mixed3b's gap falls short of the stated criterion
    assert n["gap_trained_minus_untrained"]["mixed3b"] < universality.MIN_GAP and result.passed is False
    assert (tmp_path / "universality.png").read_bytes()[:4] == b"\x89PNG" and result.figures == ["universality.png"]


def test_cli_lists_and_runs(tmp_path):
    listed = CliRunner().invoke(app, ["reproduce", "--list"])
    assert listed.exit_code == 0 and "criterion" in listed.output


def test_high_low_claim_holds_on_the_organism(tmp_path):
    from mechscope.reproduce import high_low

    result = high_low.check(tmp_path)
    assert result.summary and result.controls and "|" not in result.summary
    n = result.numbers
    assert n["high_low_detectors"] == len(n["offsets_px"]) >= high_low.MIN_DETECTORS
    # the control is computed and compared: the untrained net's detectors, same finder
    assert n["high_low_detectors"] >= high_low.MIN_RATIO_TO_UNTRAINED * n["untrained_high_low_detectors"]
    assert n["share_split"] > high_low.MIN_SPLIT_SHARE and result.passed is True
    assert (tmp_path / "high_low_nmf.png").exists()


def test_layer_banding_finds_a_banded_conv_by_construction():
    import torch
    from torch import nn

    from mechscope.reproduce.banding import excess, layer_banding

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 2, 3))
    with torch.no_grad():
        w = torch.randn(4, 3, 3, 1).expand(-1, -1, -1, 3)
        net[0].weight.copy_(torch.cat([w[:2], w[2:].transpose(-1, -2)]))   # bands both ways: pooled score cancels
    rows = layer_banding(net)
    assert set(rows) == {"0", "2"}                                            # 1x1 convs have no spatial structure
    assert rows["0"]["banded"] == 1.0 and rows["0"]["horizontal"] == rows["0"]["vertical"] == 0.5
    assert abs(rows["0"]["pooled_score"]) < 0.5 and rows["0"]["kernel"] == "3x3"
    control = {k: {**v, "banded": 0.25} for k, v in rows.items()}
    assert excess(rows, control) == {"0": 0.75, "2": round(rows["2"]["banded"] - 0.25, 4)}


def test_banding_claim_verdict_and_its_untrained_control(tmp_path):
    from mechscope.reproduce import banding

    result = banding.check(tmp_path)
    assert result.summary and result.controls and "|" not in result.summary
    n = result.numbers
    assert n["final_layer"] == "mixed4b" and "conv2d0" in n["excess_per_layer"]
    assert set(n["untrained_convs"]) == set(n["convs"]) and "mixed4b.b3x3.conv" in n["untrained_convs"]
    assert all(0 <= row["banded"] < 0.2 for row in n["untrained_convs"].values())   # the control is computed
    assert n["convs"]["mixed4b.b5x5.conv"]["kernel"] == "5x5"
    # the verdict on the shipped organism: mixed4b is not the most banded layer (mixed4a's 5x5 branch is)
    assert result.passed is False and n["strongest_earlier_excess"] > n["final_excess"]
    assert result.passed == (n["final_excess"] >= banding.MIN_EXCESS and n["final_excess"] > n["strongest_earlier_excess"])


def test_banding_claim_writes_its_figure_through_save_figure(tmp_path, monkeypatch):
    from mechscope.reproduce import banding

    saved = []
    real = banding.save_figure
    monkeypatch.setattr(banding, "save_figure", lambda fig, path, **kw: saved.append(path) or real(fig, path, **kw))
    result = banding.check(tmp_path)
    assert result.summary and result.controls and "|" not in result.summary
    assert saved == [tmp_path / "weight_banding.png"] == [tmp_path / f for f in result.figures]
    assert saved[0].read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["weight_banding.png"]   # no temporary file left behind


def test_figures_reach_files_only_through_save_figure():
    """``savefig`` writes to a path non-atomically: everywhere but plots.py it may only fill an in-memory buffer."""
    import re
    from pathlib import Path

    import mechscope

    root = Path(mechscope.__file__).parent
    calls = [(str(p.relative_to(root)), m.group(1)) for p in root.rglob("*.py") if p.name != "plots.py"
             for m in re.finditer(r"\.savefig\(\s*([^,)]+)", p.read_text())]
    assert calls and all(arg == "buf" for _, arg in calls), calls


def test_feature_use_claim_ablates_curve_detectors_against_random_sets(tmp_path):
    from mechscope.reproduce import feature_use

    result = feature_use.check(tmp_path, images=160, draws=4, n_orientations=72)
    assert result.summary and result.controls and "|" not in result.summary
    n = result.numbers
    assert result.passed, n                                 # the verdict: detectors cost the curve task more
    assert n["curve_detectors"] > 10 and n["random_draws"] == 4 and n["other_units"] == 208 - n["curve_detectors"]
    for mode in ("zero", "mean"):                           # the control was computed, per task
        row = n[mode]
        assert set(row["random_drop_median"]) == {"shape", "curve", "boundary", "colour"}
        assert row["detector_drop"]["curve"] > row["random_drop_max"]["curve"]
        assert row["share_random_below_detectors"] == 1.0 and row["p_value"] == 0.2
    assert (tmp_path / "feature_use_ablation.png").exists()


def test_curve_family_claim_on_the_rotating_grid_with_its_profile_and_controls(tmp_path):
    from mechscope.reproduce import curve_family

    result = curve_family.check(tmp_path, n_orientations=36, images=16, profile_orientations=36)
    assert result.summary and result.controls and "|" not in result.summary
    n = result.numbers
    # the grid: 64 px is off by a fraction of a cell after the strided stem, 65 px rotates onto itself
    assert n["input_size"] == 65 and n["mixed3a_grid_error_at_64px"] > 0.1 and n["mixed3a_grid_error_at_65px"] < 1e-4
    # both controls are computed: inputs-fixed weights, untrained organism's profile
    assert n["weights_control_median_cosine"] is not None
    control = n["profile_control_untrained"]
    assert control["units"]["mixed3a"] > 0 and control["units"]["mixed3b"] > 0 and control["contrast"] is not None
    assert len(n["profile"]["mean"]) == curve_family.BINS and sum(n["profile"]["count"]) > 0
    # the verdict: tuning holds, weights do not (median cosine far below 0.5), so the claim fails
    assert n["verdicts"]["tuning"] and not n["verdicts"]["weights"] and n["weights_median_cosine"] < 0.2
    assert result.passed is False
    assert (tmp_path / "curve_family.png").exists()


@pytest.mark.usefixtures("one_thread")   # conftest: torch on one thread for these organism checks
def test_branch_curves_claim_counts_detectors_per_branch_with_its_controls(tmp_path):
    from mechscope.reproduce import branch_curves

    result = branch_curves.check(tmp_path, n_orientations=72, draws=20)
    assert result.summary and result.controls and "|" not in result.summary
    n = result.numbers
    rows = n["trained"]["branches"]
    assert list(rows) == ["1x1", "3x3", "5x5", "pool_reduce"] and sum(r["width"] for r in rows.values()) == 208
    assert sum(r["count"] for r in rows.values()) == n["trained"]["detectors"] > 10
    # measured: 11 of 47 detectors in mixed3b_5x5 against 7.2 expected, p = 0.07 (the 3x3 branch holds 28 of
    # 47, p = 0.03): the paper's 5x5 clustering is not reproduced on this organism
    assert rows["5x5"]["count"] > rows["5x5"]["expected"] and rows["5x5"]["p_value"] >= branch_curves.ALPHA
    assert result.passed is False and n["trained"]["passes"] is False
    # the controls are computed: the untrained network's detectors and random sets of the same size
    assert n["untrained_control"]["detectors"] == sum(r["count"] for r in n["untrained_control"]["branches"].values())
    assert n["untrained_control"]["passes"] is False
    rnd = n["random_sets_control"]
    assert rnd["draws"] == 20 and rnd["set_size"] == n["trained"]["detectors"] and 0 <= rnd["share_passing"] <= 1
    assert result.figures == ["branch_curves.png"] and (tmp_path / "branch_curves.png").exists()


@pytest.mark.usefixtures("one_thread")   # conftest: torch on one thread for these organism checks
def test_curve_evidence_claims_compare_detectors_with_control_units(tmp_path):
    from mechscope.reproduce import curve_evidence

    kw = {"n_orientations": 24, "images": 128}
    sigma = curve_evidence.check_sigma(tmp_path, **kw)
    fill = curve_evidence.check_fill_colour(tmp_path, **kw)
    angles = curve_evidence.check_angles(tmp_path, **kw)
    for r in (sigma, fill, angles):
        assert r.summary and r.controls and "|" not in r.summary
    det, ctrl, info = curve_evidence.measure(**kw)
    # the control is computed: as many responsive non-detector units, disjoint from the detectors
    assert len(ctrl.units) == len(det.units) == info["detectors"] > 10 and not set(ctrl.units) & set(det.units)
    for ev in (det, ctrl):
        assert len(ev.sigma) == len(ev.corr) == len(ev.angle_ratio) == len(ev.units)
        assert set(ev.per_variant) == {name for name, _ in curve_evidence.VARIANTS}
    # measured (default sizes: 9.3 σ vs 11.4 σ): synthetic curves drive the detectors many σ above the dataset
    # mean, but they drive other responsive units even further, so the σ claim fails its control
    s = sigma.numbers["sigma"]
    assert s["detectors_median"] >= curve_evidence.MIN_SIGMA and s["control_median"] > s["detectors_median"]
    assert sigma.passed is False
    # fill and colour: detectors' tuning survives (0.93), a little better than the control's (0.90; a detector
    # beats a control unit with probability 0.69): passes, though most responsive units are as invariant
    c = fill.numbers["corr"]
    assert fill.passed is True and c["detectors_median"] > c["control_median"] >= 0.5
    # angles: about two thirds of the curve response, against ~0.9 for the control units: passes
    a = angles.numbers["angle_over_curve"]
    assert angles.passed is True and a["detectors_median"] < 1 and a["control_median"] is not None
    for r in (sigma, fill, angles):
        assert r.figures and all((tmp_path / f).exists() for f in r.figures)
    assert [c.name for c in curve_evidence.CLAIMS] == ["curve-detectors-many-sigma",
                                                       "curve-detectors-fill-colour-invariant",
                                                       "curve-detectors-prefer-curves-to-angles"]
