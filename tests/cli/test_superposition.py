import json

from typer.testing import CliRunner

from mechscope.cli import app

runner = CliRunner()


def test_list_run_and_sae_verbs(tmp_path):
    r = runner.invoke(app, ["superposition", "list", "--json"])
    assert r.exit_code == 0 and "phase" in {x["name"] for x in json.loads(r.output)}
    r = runner.invoke(app, ["superposition", "run", "intro", "--steps", "20", "--k", "1", "--threads", "1",
                            "--out", str(tmp_path / "intro"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["settings"]["steps"] == 20 and (tmp_path / "intro" / "norms.png").exists()
    r = runner.invoke(app, ["sae", "toy", "--toy-steps", "50", "--steps", "20", "--out", str(tmp_path / "toy")])
    assert r.exit_code == 0, r.output
    assert 0 <= json.loads((tmp_path / "toy" / "results.json").read_text())["mean_max_cosine"] <= 1
    r = runner.invoke(app, ["sae", "layer", "shapes", "mixed3a", "--dataset", "shapes:4", "--latents", "32",
                            "--steps", "5", "--out", str(tmp_path / "layer")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "layer" / "results.json").read_text())["rows"] == 4 * 16 * 16
