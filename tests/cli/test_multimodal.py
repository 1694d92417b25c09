import json

from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.errors import MechscopeError

runner = CliRunner()


def test_multimodal_verb_json_and_summary():
    r = runner.invoke(app, ["multimodal", "shapes-clip", "image_embed", "--per-cell", "2", "--margin", "0.5",
                            "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["model"] == "shapes-clip" and d["margin"] == 0.5 and len(d["units"]) == 64
    assert set(d["units"][0]["strongest"]) == {"picture", "sketch", "word"} and "picture-word" in d["counts"]
    r = runner.invoke(app, ["multimodal", "shapes-clip", "image_embed", "--per-cell", "2"])
    assert r.exit_code == 0 and "image_embed:63" in r.output and "picture-word" in r.output


def test_typographic_and_zeroshot_verbs():
    r = runner.invoke(app, ["typographic", "shapes-clip", "--n", "20", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert set(d) >= {"attack", "random_letters", "own_word"} and d["attack"]["n"] == 20
    r = runner.invoke(app, ["typographic", "shapes-clip", "--n", "20"])
    assert r.exit_code == 0 and "random letters" in r.output and "own word" in r.output
    r = runner.invoke(app, ["zeroshot", "shapes-clip", "--n", "10", "--styles", "picture,word", "--json"])
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.output)["accuracy"]) == {"picture", "word"}
    r = runner.invoke(app, ["zeroshot", "shapes-clip", "--n", "10", "--styles", "sketch"])
    assert r.exit_code == 0 and "sketch" in r.output


def test_a_model_without_a_text_tower_is_refused():
    for argv in (["zeroshot", "shapes", "--n", "2"], ["typographic", "shapes", "--n", "2"],
                 ["multimodal", "shapes", "mixed4b", "--per-cell", "1"]):
        r = runner.invoke(app, argv)
        assert r.exit_code != 0 and isinstance(r.exception, MechscopeError)
        assert "shapes-clip" in str(r.exception) and "clip-rn50x4" in str(r.exception)
