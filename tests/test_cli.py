import json
import subprocess
import sys

from PIL import Image
from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.errors import UnknownNameError

runner = CliRunner()


def test_models_lists_the_zoo():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert rows[0]["name"] == "inceptionv1" and "download" in rows[0]["weights"]


def test_layers_json_lists_widths_and_spatial_sizes():
    result = runner.invoke(app, ["layers", "inceptionv1", "--json"])
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    widths = {"conv2d0": 64, "conv2d1": 64, "conv2d2": 192, "mixed3a": 256, "mixed3b": 480, "mixed4a": 508,
              "mixed4b": 512, "mixed4c": 512, "mixed4d": 528, "mixed4e": 832, "mixed5a": 832, "mixed5b": 1024}
    assert {n: rows[n]["channels"] for n in widths} == widths
    assert rows["mixed3b"]["spatial"] == [28, 28] and rows["conv2d0"]["spatial"] == [112, 112]
    assert rows["mixed3b_pre_relu"]["pre_relu"] and not rows["mixed3b"]["pre_relu"]
    assert rows["mixed3a_5x5_bottleneck"]["branch"] and rows["mixed3a_5x5_bottleneck"]["channels"] == 16


def test_layers_table():
    result = runner.invoke(app, ["layers", "inceptionv1"])
    assert result.exit_code == 0
    assert any(line.split()[:3] == ["mixed4a", "508", "14x14"] for line in result.stdout.splitlines())


def test_unknown_model_is_one_line_on_stderr_with_exit_1():
    result = runner.invoke(app, ["layers", "inceptionv2"])
    assert isinstance(result.exception, UnknownNameError)
    proc = subprocess.run([sys.executable, "-m", "mechscope.cli", "layers", "inceptionv2"], capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: unknown model 'inceptionv2'") and "Traceback" not in proc.stderr


def test_demo_writes_image_and_config(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--steps", "3", "--size", "48"])
    assert result.exit_code == 0, result.output
    png = tmp_path / "inceptionv1_mixed3b_379.png"
    assert Image.open(png).size == (48, 48)
    config = json.loads(png.with_suffix(".json").read_text())
    assert config["steps"] == 3 and config["unit"] == "mixed3b:379" and "objective_end" in config


def test_vis_writes_pngs_and_json(tmp_path):
    result = runner.invoke(app, ["vis", "inceptionv1", "mixed3a:10", "mixed3b:5", "--weights", "random", "--steps", "2",
                                 "--size", "48", "--diversity", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mixed3a_10_1.png").exists() and (tmp_path / "mixed3b_5_0.png").exists()
    record = json.loads((tmp_path / "mixed3b_5.json").read_text())
    assert record["settings"]["model"] == "inceptionv1" and record["settings"]["steps"] == 2
    assert len(record["final_activation"]) == 2 and len(record["trace"]) == 2
