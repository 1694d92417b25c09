import json

from typer.testing import CliRunner

from mechscope.cli import app

runner = CliRunner()


def test_tuning_weights_attribution_families_and_circuit_on_the_organism(tmp_path):
    r = runner.invoke(app, ["tuning", "shapes", "mixed3b:45", "--orientations", "36", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "mixed3b_45_radial.png").exists() and (tmp_path / "mixed3b_45_curvature.png").exists()
    assert len(json.loads((tmp_path / "mixed3b_45_tuning.json").read_text())["responses"]) == 36
    r = runner.invoke(app, ["weights", "shapes", "mixed3a", "mixed3b:100", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "mixed3b_100_from_mixed3a_nmf.png").exists()
    r = runner.invoke(app, ["attribution", "shapes", "mixed3b:45", "mixed3a", "--dataset", "shapes:4",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert len(json.loads((tmp_path / "mixed3b_45_from_mixed3a.json").read_text())["top"]) == 10
    r = runner.invoke(app, ["families", "shapes", "mixed3b", "--orientations", "36", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "families" in json.loads((tmp_path / "mixed3b_families.json").read_text())
    r = runner.invoke(app, ["circuit", "shapes", "mixed3b:100", "--layer", "mixed3a", "--k", "2", "--no-featvis",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "mixed3b_100_circuit.png").exists()


def test_families_by_weights_with_branches_and_universality(tmp_path):
    r = runner.invoke(app, ["families", "shapes", "conv2d0", "--by", "weights", "--threshold", "0.5",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    payload = json.loads((tmp_path / "conv2d0_families.json").read_text())
    assert payload["by"] == "weights" and sum(len(f) for f in payload["families"]) == 32
    assert (tmp_path / "conv2d0_families.png").exists()
    r = runner.invoke(app, ["families", "shapes", "mixed3a", "--orientations", "36", "--branches",
                            "--compare", "shapes-seed1", "--images", "32", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    branches = json.loads((tmp_path / "mixed3a_branches.json").read_text())
    assert [b["branch"] for b in branches["colour"]["branches"]] == ["1x1", "3x3", "5x5", "pool_reduce"]
    assert sum(b["width"] for b in branches["curve"]["branches"]) == 128
    universality = json.loads((tmp_path / "mixed3a_universality.json").read_text())
    assert len(universality["best_corr"]) == 128 and 0 <= universality["share"] <= 1
    assert (tmp_path / "mixed3a_universality.png").exists() and (tmp_path / "mixed3a_branches.png").exists()
    r = runner.invoke(app, ["families", "shapes", "mixed3a", "--by", "colour", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "--by must be" in str(r.exception)


def test_tuning_finds_detectors_in_a_layer_rotates_examples_and_reports_sigma(tmp_path):
    stats_dir = tmp_path / "stats"
    r = runner.invoke(app, ["stats", "shapes", "mixed3b", "--dataset", "shapes:64", "--plot-units", "0",
                            "--out", str(stats_dir)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["tuning", "shapes", "mixed3a", "mixed3b:45", "mixed3b:52", "--orientations", "36",
                            "--rotated", "4", "--dataset", "shapes:64", "--stats", str(stats_dir),
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    found = json.loads((tmp_path / "mixed3a_detectors.json").read_text())
    assert len(found["units"]) == 128 and {u["kind"] for u in found["units"]} <= {"curve", "high_low", "line", "other"}
    assert (tmp_path / "mixed3a_detectors.png").exists()
    unit = json.loads((tmp_path / "mixed3b_45_tuning.json").read_text())
    assert len(unit["responses_sigma"]) == 36 and unit["peak_sigma"] == max(unit["responses_sigma"])
    rotated = json.loads((tmp_path / "mixed3b_45_rotated.json").read_text())
    assert len(rotated["angles"]) == 360 and set(rotated["responses"]) == {"mixed3b:45", "mixed3b:52"}
    r = runner.invoke(app, ["tuning", "shapes", "mixed3a:1", "--orientations", "8", "--stats", str(stats_dir),
                            "--out", str(tmp_path)])
    assert r.exit_code != 0 and "no statistics of shapes mixed3a:1" in str(r.exception)


def test_ablate_a_unit_set_against_random_sets_and_every_unit_alone(tmp_path):
    result = runner.invoke(app, ["ablate", "shapes", "mixed4b", "--units", "3,7,11", "--draws", "3", "--images",
                                 "40", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "curve: accuracy" in result.output and "of 3 random sets drop less" in result.output
    [row] = json.loads((tmp_path / "ablation.json").read_text())
    assert row["units"] == [3, 7, 11] and len(row["random_drops"]) == 3 and (tmp_path / "ablation.png").exists()
    result = runner.invoke(app, ["ablate", "shapes", "mixed4b", "--each", "--images", "40", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "ablation_each.json").read_text())
    assert len(table) == 256 and set(table["mixed4b:0"]) == {"shape", "curve", "boundary", "colour"}
    bad = runner.invoke(app, ["ablate", "shapes", "mixed3c", "--units", "1", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "mixed3b" in str(bad.exception)
    none = runner.invoke(app, ["ablate", "shapes", "mixed4b", "--out", str(tmp_path)])
    assert none.exit_code != 0 and "nothing to ablate" in str(none.exception)
