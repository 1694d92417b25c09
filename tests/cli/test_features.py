"""`mechscope features`: one unit's contexts, logit effects and frequency (as the library computes them), the
monosemanticity summary, and bad input (unit out of range, unknown hook, a dictionary of another model)."""

import json

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.errors import MechscopeError, UnknownNameError
from mechscope.transformer.features import feature_contexts
from mechscope.zoo.dictionaries import load_dictionary
from mechscope.zoo.organisms.mlp_sae_recipe import SAMPLE
from mechscope.zoo.registry import bundle_dir, load_language_model

runner = CliRunner()
ROWS = "12"


def run(*args):
    return runner.invoke(app, ["features", "mlp-1l", "--rows", ROWS, *args])


def test_one_latent_as_the_library_sees_it():
    r = run("--sae", "mlp-1l-sae", "--unit", "5", "--k", "4", "--json")
    assert r.exit_code == 0, r.output
    p = json.loads(r.output)
    model, tok = load_language_model("mlp-1l")
    tokens = load_file(str(bundle_dir() / SAMPLE))["tokens"].long()[:int(ROWS)]
    fc = feature_contexts(model, tokens, "blocks.0.mlp.hook_post", sae=load_dictionary("mlp-1l-sae")[0], k=4,
                          tokenizer=tok)
    assert [c["text"] for c in p["contexts"]] == [c.text for c in fc.contexts(5)]
    assert p["frequency"] == pytest.approx(float(fc.frequency[5])) and p["kind"] == "latent"
    assert len(p["promoted"]) == 10 and p["promoted"][0][1] >= p["promoted"][-1][1] > p["suppressed"][0][1]
    assert sum(p["histogram"]["counts"]) == int(fc.fired[5])
    text = run("--unit", "7", "--k", "3")
    assert text.exit_code == 0 and "neuron 7 of blocks.0.mlp.hook_post" in text.output and "[[" in text.output
    assert "promotes:" in text.output and "suppresses:" in text.output


def test_summary_beside_random_directions():
    r = run("--json", "--k", "5")
    assert r.exit_code == 0, r.output
    p = json.loads(r.output)
    assert p["units"] == 512 and p["tokens"] == int(ROWS) * 128
    assert set(p) >= {"neurons", "random_directions"} and 0 < p["neurons"]["class_concentration"] <= 1


def test_bad_input_names_what_is_valid():
    with pytest.raises(MechscopeError, match=r"valid latents are 0\.\.2047"):
        raise run("--sae", "mlp-1l-sae", "--unit", "2048").exception
    with pytest.raises(MechscopeError, match=r"valid neurons are 0\.\.511"):
        raise run("--unit", "-1").exception
    with pytest.raises(UnknownNameError, match=r"blocks\.0\.mlp\.hook_post"):
        raise run("--hook", "blocks.0.mlp.hook_mid").exception
    r = runner.invoke(app, ["features", "attn-only-1l", "--sae", "mlp-1l-sae"])
    with pytest.raises(MechscopeError, match="reads mlp-1l's blocks.0.mlp.hook_post, not attn-only-1l"):
        raise r.exception
    with pytest.raises(UnknownNameError, match="mlp-1l-sae"):
        raise run("--sae", "mlp-1l-dict").exception
