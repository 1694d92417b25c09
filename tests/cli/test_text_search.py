import json

from typer.testing import CliRunner

from mechscope.cli import app

runner = CliRunner()


def test_text_search_prints_ranked_captions_and_searched_texts():
    r = runner.invoke(app, ["text-search", "shapes-clip", "image_embed:5", "--max-words", "2", "--beam", "2",
                            "--k", "2", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["unit"] == "image_embed:5" and d["max_words"] == 2 and len(d["searched"]) == 2
    assert d["searched"][0]["score"] >= d["ranked"][0]["score"] - 1e-6
    r = runner.invoke(app, ["text-search", "shapes-clip", "image_embed:5", "--max-words", "2", "--beam", "2"])
    assert r.exit_code == 0 and "free text searched" in r.output


def test_text_search_names_the_valid_units():
    r = runner.invoke(app, ["text-search", "shapes-clip", "image_embed:640"])
    assert r.exit_code != 0 and "0..63" in str(r.exception)
