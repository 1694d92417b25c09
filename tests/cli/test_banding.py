import json

from typer.testing import CliRunner

from mechscope.cli import app

runner = CliRunner()


def test_banding_verb_writes_png_and_json_against_the_untrained_net(tmp_path):
    r = runner.invoke(app, ["banding", "banding-gap", "conv3", "conv4", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "conv4 (3x3): banded" in r.output and "untrained" in r.output
    payload = json.loads((tmp_path / "banding-gap_banding.json").read_text())
    assert set(payload["convs"]) == {"conv3", "conv4"} == set(payload["untrained_convs"])
    assert (tmp_path / "banding-gap_banding.png").exists()
    r = runner.invoke(app, ["banding", "banding-gap", "logits", "--out", str(tmp_path)])
    assert r.exit_code != 0


def test_train_banding_runs_the_recipe(tmp_path):
    r = runner.invoke(app, ["train", "banding", "avg-x", "--steps", "2", "--eval-items", "16",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "banding_avg_x.json").read_text())
    assert card["name"] == "banding-avg-x" and card["recipe"]["steps"] == 2
    assert (tmp_path / "banding_avg_x.safetensors").exists()
    r = runner.invoke(app, ["train", "banding", "flatten", "--steps", "2", "--out", str(tmp_path)])
    assert r.exit_code != 0
