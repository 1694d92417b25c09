import json
import re
import subprocess
import sys

from PIL import Image
from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.errors import MechscopeError, UnknownNameError

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
    proc = subprocess.run([sys.executable, "-m", "mechscope", "layers", "inceptionv2"], capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: unknown model 'inceptionv2'") and "Traceback" not in proc.stderr


def test_demo_on_the_bundled_organism(tmp_path):
    args = ["demo", "--out", str(tmp_path), "--steps", "3", "--images", "64", "--detectors", "3",
            "--microscope-steps", "2", "--circuit", "1", "--k", "1", "--toy-steps", "20",
            "--whole-layers", "conv2d0"]
    result = runner.invoke(app, args)  # not a terminal: builds and exports, does not serve
    assert result.exit_code == 0, result.output
    assert "accuracy on 500 fresh held-out images" in result.output and "curve detectors" in result.output
    assert Image.open(tmp_path / "shapes_mixed3b_curve_detectors_featvis.png").size[1] == 64
    assert (tmp_path / "shapes_mixed3b_radial_tuning.png").exists()
    assert "mechscope microscope serve" in result.output
    for page in ("shapes/mixed3b/0.html", "attn-only-2l/blocks.1.attn/3.html", "superposition/intro/9.html"):
        assert (tmp_path / "microscope-site" / page).is_file(), page
    for layer in ("mixed3b", "mixed3a", "conv2d2"):  # one unit per layer, down the circuit
        assert re.search(rf"shapes:{layer} +built +1, up to date +0", result.output), result.output
    assert re.search(r"shapes:conv2d0 \(all\) +built +32, up to date +0", result.output), result.output



def test_vis_writes_pngs_and_json(tmp_path):
    result = runner.invoke(app, ["vis", "inceptionv1", "mixed3a:10", "mixed3b:5", "--weights", "random", "--steps", "2",
                                 "--size", "48", "--diversity", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mixed3a_10_1.png").exists() and (tmp_path / "mixed3b_5_0.png").exists()
    record = json.loads((tmp_path / "mixed3b_5.json").read_text())
    assert record["settings"]["model"] == "inceptionv1" and record["settings"]["steps"] == 2
    assert len(record["final_activation"]) == 2 and len(record["trace"]) == 2


def _image_folder(root, n=5):
    import numpy as np

    root.mkdir()
    for i in range(n):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(root / f"{i}.png")
    (root / "broken.png").write_bytes(b"not a png")
    (root / "empty.jpg").write_bytes(b"")
    return root


def test_examples_skips_and_counts_corrupt_files_and_resumes(tmp_path):
    from mechscope.store import open_store, read_rows

    data, out = _image_folder(tmp_path / "imgs"), tmp_path / "out"
    args = ["examples", "inceptionv1", "conv2d0", "--dataset", str(data), "--top-k", "2", "--out", str(out),
            "--weights", "random", "--size", "32", "--batch-size", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "scanned 5 images" in result.output and "skipped 2 unreadable files: UnidentifiedImageError x2" in result.output
    with open_store(out) as store:
        first = read_rows(store, "examples", layer="conv2d0")
        assert len(first) == 64 * 2 * 2 and not read_rows(store, "stats")
        assert {r["dataset_index"] for r in first} <= {0, 1, 2, 3, 4}  # 5, 6: broken.png, empty.jpg
    again = runner.invoke(app, args)  # rerun: continues the finished checkpoint, same rows
    assert again.exit_code == 0 and "continuing the scan" in again.output and "skipped 2" in again.output
    with open_store(out) as store:
        assert read_rows(store, "examples", layer="conv2d0") == first
    other = runner.invoke(app, args[:6] + ["3"] + args[7:])  # another k into the same folder: refused
    assert isinstance(other.exception, MechscopeError) and "different scan" in str(other.exception)


def test_stats_writes_rows_and_plots(tmp_path):
    from mechscope.store import open_store, read_rows

    data, out = _image_folder(tmp_path / "imgs", n=3), tmp_path / "out"
    result = runner.invoke(app, ["stats", "inceptionv1", "conv2d0_pre_relu", "--dataset", str(data), "--out", str(out),
                                 "--weights", "random", "--size", "32", "--plot-units", "2"])
    assert result.exit_code == 0, result.output
    with open_store(out) as store:
        rows = read_rows(store, "stats", layer="conv2d0_pre_relu")
        assert len(rows) == 64 and rows[0]["count"] == 3 * 16 * 16
    plots = sorted(p.name for p in (out / "plots" / "conv2d0_pre_relu").iterdir())
    assert plots == ["0_log_prob.png", "0_quilt.png", "1_log_prob.png", "1_quilt.png", "layer_log_prob.png"]


def test_scan_commands_refuse_a_corrupt_index_and_unknown_layers(tmp_path):
    data, out = _image_folder(tmp_path / "imgs", n=2), tmp_path / "out"
    out.mkdir()
    (out / "index.sqlite").write_bytes(b"garbage" * 200)
    result = runner.invoke(app, ["stats", "inceptionv1", "conv2d0", "--dataset", str(data), "--out", str(out),
                                 "--weights", "random", "--size", "32"])
    assert isinstance(result.exception, MechscopeError) and "not a readable SQLite database" in str(result.exception)
    result = runner.invoke(app, ["stats", "inceptionv1", "mixed3x", "--dataset", str(data), "--out", str(tmp_path / "o"),
                                 "--weights", "random", "--size", "32"])
    assert isinstance(result.exception, UnknownNameError) and "mixed3a" in str(result.exception)
    result = runner.invoke(app, ["stats", "inceptionv1", "conv2d0", "--dataset", "imagenet", "--out",
                                 str(tmp_path / "o"), "--weights", "random", "--size", "32"])
    assert isinstance(result.exception, MechscopeError) and "accepted forms" in str(result.exception)
