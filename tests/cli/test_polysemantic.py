import json

from typer.testing import CliRunner

from mechscope.cli import app

runner = CliRunner()


def test_polysemantic_verb_writes_json_and_png(tmp_path):
    r = runner.invoke(app, ["polysemantic", "shapes", "conv2d1", "--k", "4", "--top", "3", "--images", "30",
                            "--threads", "1", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "conv2d1:" in r.output and "bits" in r.output
    payload = json.loads((tmp_path / "polysemantic_conv2d1.json").read_text())
    assert payload["k"] == 4 and len(payload["most_polysemantic"]) == 3 and len(payload["entropy_bits"]) == 32
    assert (tmp_path / "polysemantic_conv2d1.png").stat().st_size > 0
    bad = runner.invoke(app, ["polysemantic", "shapes", "conv2d1", "--k", "50", "--images", "10",
                              "--out", str(tmp_path)])
    assert bad.exit_code != 0


def test_train_shapes_sae_writes_weights_and_card(tmp_path):
    r = runner.invoke(app, ["train", "shapes-sae", "--steps", "2", "--images", "2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "shapes_mixed3b_sae.json").read_text())
    assert card["recipe"]["steps"] == 2 and card["rows"] == 2 * 16 * 16 and len(card["sha256"]) == 64
    assert (tmp_path / "shapes_mixed3b_sae.safetensors").exists()
