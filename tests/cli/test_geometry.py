import json

from typer.testing import CliRunner

from mechscope.cli import app

runner = CliRunner()


def test_tms_geometry_writes_json_and_png(tmp_path):
    r = runner.invoke(app, ["tms-geometry", "--features", "12", "--hidden", "3", "--seeds", "2", "--dense", "3",
                            "--sparse", "3", "--steps", "20", "--batch", "64", "--threads", "1",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "geometry.json").read_text())
    assert s["n_features"] == 12 and s["seeds"] == 2 and len(s["one_over_density"]) == 6
    assert len(s["dimensions_per_feature"]) == 2 and len(s["control_curve"]) == 6
    assert set(s["plateaus"]) == {"1.0", "0.5"} and "plateau at 0.5" in r.output
    assert (tmp_path / "geometry.png").read_bytes()[:4] == b"\x89PNG"
