"""`mechscope train mlp-1l` and `train mlp-1l-sae` are registered with the recipes' options (the recipes
themselves run end to end in tests/zoo/organisms/test_mlp_recipe.py)."""

from typer.testing import CliRunner

from mechscope.cli import app

runner = CliRunner()


def test_the_train_verbs_exist_with_their_options():
    r = runner.invoke(app, ["train", "mlp-1l", "--help"])
    assert r.exit_code == 0 and "--steps" in r.output and "resumable" in r.output
    r = runner.invoke(app, ["train", "mlp-1l-sae", "--help"])
    assert r.exit_code == 0 and "--model-file" in r.output and "--data" in r.output


def test_a_missing_model_file_is_refused(tmp_path):
    r = runner.invoke(app, ["train", "mlp-1l-sae", "--out", str(tmp_path / "o"), "--model-file",
                            str(tmp_path / "absent.safetensors"), "--data", str(tmp_path)])
    assert r.exit_code != 0 and "absent.safetensors" in (r.output + str(r.exception))
