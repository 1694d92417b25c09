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
    assert claim_names() == ["curve-detectors-exist", "featvis-many-sigma", "handmade-curve-detector",
                             "seeds-share-early-units"]
    assert len(get_claims(["all"])) == 4
    with pytest.raises(UnknownNameError, match="curve-detectors-exist"):
        get_claims(["curve-detector-exists"])


def test_curve_detector_claim_on_the_organism(tmp_path):
    result = curve_detectors.check(tmp_path, n_orientations=72)
    assert result.passed, result.numbers
    assert result.numbers["sectors_covered_of_8"] >= 7 and (tmp_path / result.figures[0]).exists()


def test_universality_claim_reports_per_layer_shares(tmp_path):
    result = universality.check(tmp_path, images=128)
    assert set(result.numbers) >= {"conv2d0", "mixed3b", "threshold"}
    assert 0 <= result.numbers["conv2d0"]["share_matched"] <= 1


def test_cli_lists_and_runs(tmp_path):
    listed = CliRunner().invoke(app, ["reproduce", "--list"])
    assert listed.exit_code == 0 and "criterion" in listed.output


def test_handmade_curve_claim(tmp_path):
    from mechscope.reproduce import handmade_curve

    result = handmade_curve.check(tmp_path, n_orientations=36, designed=(0.0, 135.0))
    assert result.numbers["max_orientation_error_deg"] <= 15 and result.numbers["learned_detectors"] > 0


def test_featvis_sigma_claim_measures_each_unit_against_the_dataset(tmp_path):
    from mechscope.reproduce import featvis_sigma

    result = featvis_sigma.check(tmp_path, images=256, steps=4)
    assert 1 <= len(result.numbers["units"]) <= 8 and (tmp_path / result.figures[0]).exists()
    for row in result.numbers["units"].values():
        assert set(row) == {"featvis_max", "dataset_max", "sigma"}
