import json

import pytest
from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.errors import MechscopeError

runner = CliRunner()


def test_heads_composition_ov_qk_on_a_random_organism(tmp_path):
    r = runner.invoke(app, ["heads", "attn-only-2l", "--weights", "random", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "attn-only-2l_heads.json").read_text())
    assert [x["head"] for x in rows] == [f"{l}.{h}" for l in range(2) for h in range(4)]
    assert {"previous_token", "duplicate_token", "induction", "copying"} <= set(rows[0])
    assert (tmp_path / "attn-only-2l_heads.png").exists()
    r = runner.invoke(app, ["composition", "attn-only-2l", "--weights", "random", "--kind", "k", "--json",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.output)
    assert len(payload["scores"]) == 8 and 0 < payload["baseline"] < 1 and len(payload["top"]) == 5
    r = runner.invoke(app, ["ov", "attn-only-2l", "1.2", "--weights", "random", "--top", "3", "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output)["top"]) == 3 and "copying_score" in json.loads(r.output)
    r = runner.invoke(app, ["qk", "attn-only-2l", "0.1", "--weights", "random", "--top", "2"])
    assert r.exit_code == 0 and "QK circuit" in r.output


def test_bad_heads_and_models_are_refused():
    r = runner.invoke(app, ["ov", "attn-only-2l", "2.0", "--weights", "random"])
    assert isinstance(r.exception, MechscopeError) and "layers 0..1" in str(r.exception)
    r = runner.invoke(app, ["qk", "attn-only-2l", "one", "--weights", "random"])
    assert isinstance(r.exception, MechscopeError) and "LAYER.HEAD" in str(r.exception)
    r = runner.invoke(app, ["heads", "shapes"])
    assert isinstance(r.exception, MechscopeError) and "not a language model" in str(r.exception)
    r = runner.invoke(app, ["composition", "attn-only-1l", "--weights", "random"])
    assert isinstance(r.exception, MechscopeError) and "one layer" in str(r.exception)


@pytest.mark.parametrize("name", ["attn-only-2l"])
def test_layers_lists_hook_points_of_a_language_model(name):
    r = runner.invoke(app, ["layers", name, "--json"])
    assert r.exit_code == 0, r.output
    hooks = {h["name"]: h["shape"] for h in json.loads(r.output)}
    assert hooks["blocks.1.attn.hook_pattern"] == [4, 128, 128]


def test_train_attn_only_writes_weights_tokenizer_and_card_and_resumes(tmp_path):
    args = ["train", "attn-only", "--layers", "1", "--steps", "3", "--corpus-mb", "0.2", "--vocab", "300",
            "--threads", "1", "--out", str(tmp_path)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "attn-only-1l.json").read_text())
    assert card["recipe"]["steps"] == 3 and card["data"]["tokens_seen"] == 3 * 32 * 128
    assert {"previous_token", "induction", "held_out_loss"} <= set(card["final"])
    from mechscope.zoo.attn_only import load

    model = load(tmp_path / "attn-only-1l.safetensors")
    assert model.cfg.d_vocab == 300 and model.cfg.n_layers == 1
    again = runner.invoke(app, args)                                   # resumes from the finished checkpoint
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "attn-only-1l.json").read_text())["sha256"] == card["sha256"]
