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
