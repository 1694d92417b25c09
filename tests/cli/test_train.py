import json

from typer.testing import CliRunner

from mechscope.cli import app


def test_train_shapes_writes_weights_card_and_census_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["train", "shapes", "--out", str(out), "--steps", "2", "--batch-size", "4", "--threads", "1",
            "--census-every", "2", "--census-orientations", "8",
            "--eval-items", "16"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "shapes.json").read_text())
    assert (out / "shapes.safetensors").stat().st_size > 100_000
    assert set(card["accuracy"]) == {"shape", "curve", "boundary", "colour"}
    assert card["recipe"]["steps"] == 2 and card["recipe"]["seed"] == 0
    assert [row["step"] for row in card["census_during_training"]] == [2]
    assert set(card["curve_detector_census"]) == {"mixed3a", "mixed3b"}
    assert "held-out accuracy" in result.output
    # a rerun resumes from the finished checkpoint: no new steps, same weights
    before = (out / "shapes.safetensors").read_bytes()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert (out / "shapes.safetensors").read_bytes() == before


def test_train_shapes_refuses_unknown_tasks(tmp_path):
    result = CliRunner().invoke(app, ["train", "shapes", "--out", str(tmp_path), "--tasks", "shape,colours"])
    assert result.exit_code != 0
    assert "unknown tasks" in str(result.exception) or "unknown tasks" in result.output
