import json

from typer.testing import CliRunner

from mechscope.cli import app


def test_first_layer_writes_png_and_json_with_branches_and_svd(tmp_path):
    result = CliRunner().invoke(app, ["first-layer", "branched-3", "--weights", "random", "--draws", "50",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "first_layer.json").read_text())
    assert payload["layer"] == "conv1" and payload["groups"] == 3 and payload["shape"] == [24, 3, 7, 7]
    assert len(payload["branches"]["branch_means"]) == 3
    assert payload["branches"]["random_partitions"]["draws"] == 50
    assert len(payload["svd"]["colour"]) == 4 and len(payload["unit_colour_scores"]) == 24
    assert (tmp_path / "first_layer.png").stat().st_size > 1000
    assert "3 branches" in result.output and "SVD components" in result.output


def test_first_layer_groups_option_and_uneven_groups(tmp_path):
    ok = CliRunner().invoke(app, ["first-layer", "branched-1", "--weights", "random", "--groups", "2", "--draws",
                                  "20", "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert len(json.loads((tmp_path / "first_layer.json").read_text())["branches"]["branch_means"]) == 2
    bad = CliRunner().invoke(app, ["first-layer", "branched-1", "--weights", "random", "--groups", "5",
                                   "--out", str(tmp_path)])
    assert bad.exit_code != 0
    assert "cannot split evenly" in str(bad.exception) + bad.output


def test_train_branched_writes_weights_and_card(tmp_path):
    result = CliRunner().invoke(app, ["train", "branched", "--groups", "2", "--out", str(tmp_path), "--steps", "2",
                                      "--batch-size", "4", "--eval-items", "8"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "branched_2.json").read_text())
    assert card["name"] == "branched-2" and card["recipe"]["groups"] == 2 and card["recipe"]["steps"] == 2
    assert (tmp_path / "branched_2.safetensors").exists() and "held-out accuracy" in result.output
