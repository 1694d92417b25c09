import json

from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.vision.families.census import read_census_log, train_shapes_with_census
from mechscope.zoo.organisms.shapes_recipe import ShapesRecipe


def test_the_python_call_writes_the_card_the_cli_writes(tmp_path):
    recipe = ShapesRecipe(steps=2, batch_size=4, eval_items=8, threads=1)
    seen = []
    card = train_shapes_with_census(tmp_path / "py", recipe, census_every=1, census_orientations=8, progress=False,
                                    on_census=lambda step, found: seen.append((step, sorted(found))))
    assert seen == [(1, ["mixed3a", "mixed3b"]), (2, ["mixed3a", "mixed3b"])]
    assert json.loads(json.dumps(card)) == json.loads((tmp_path / "py" / "shapes.json").read_text())
    assert [r["step"] for r in card["census_during_training"]] == [1, 2]
    assert set(card["curve_detector_census_strict"]["mixed3b"]) == {"units", "curve_detectors",
                                                                    "coverage_of_8_sectors", "criteria"}
    result = CliRunner().invoke(app, ["train", "shapes", "--out", str(tmp_path / "cli"), "--steps", "2",
                                      "--batch-size", "4", "--threads", "1", "--census-every", "1",
                                      "--census-orientations", "8", "--eval-items", "8"])
    assert result.exit_code == 0, result.output
    cli = json.loads((tmp_path / "cli" / "shapes.json").read_text())
    assert set(cli) == set(card)
    assert cli["accuracy"] == card["accuracy"] and cli["sha256"] == card["sha256"]
    assert cli["curve_detector_census"] == card["curve_detector_census"]


def test_the_census_log_keeps_the_last_row_of_each_step_in_order(tmp_path):
    assert read_census_log(tmp_path / "absent.jsonl") == []
    (tmp_path / "c.jsonl").write_text('{"step": 4, "a": 1}\n{"step": 2, "a": 2}\n\n{"step": 4, "a": 3}\n')
    assert read_census_log(tmp_path / "c.jsonl") == [{"step": 2, "a": 2}, {"step": 4, "a": 3}]
