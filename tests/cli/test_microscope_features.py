"""`mechscope microscope build mlp-1l`: the heads, and the pages of the bundled dictionary's latents and the MLP's
neurons from the bundled held-out sample; `--latents N` spreads N latents over the density ranking."""

import torch
from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.microscope.kinds import TOP_CONTEXTS
from mechscope.store import open_store, read_rows

HOOK = "blocks.0.mlp.hook_post"


def test_build_mlp_1l_writes_latent_and_neuron_pages(tmp_path, monkeypatch):
    from mechscope.zoo.organisms import mlp_sae_recipe

    sample = mlp_sae_recipe.held_out_sample()[:24]       # the wiring; test_features covers the pages themselves
    monkeypatch.setattr(mlp_sae_recipe, "held_out_sample", lambda: sample)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = ["microscope", "build", "mlp-1l", "--latents", "4", "--out", str(tmp_path)]
        first = CliRunner().invoke(app, args)
        again = CliRunner().invoke(app, args)
    finally:
        torch.set_num_threads(threads)
    assert first.exit_code == 0, first.output
    assert "mlp-1l: built 4 heads" in first.output
    assert "mlp-1l-sae: built 4 latents, skipped 0 already built" in first.output
    assert f"mlp-1l:{HOOK}: built 512 neurons, skipped 0 already built" in first.output
    assert "mlp-1l-sae: built 0 latents, skipped 4 already built" in again.output
    with open_store(tmp_path) as store:
        layers = {(r["layer"], (r["settings"] or {}).get("kind")) for r in read_rows(store, "layers", model="mlp-1l")}
        latents = {r["channel"] for r in read_rows(store, "figures", model="mlp-1l", layer="mlp-1l-sae",
                                                   kind=TOP_CONTEXTS.name)}
    assert layers == {("blocks.0.attn", "heads"), ("mlp-1l-sae", "dictionary"), (HOOK, "mlp_neurons")}
    assert len(latents) == 4


def test_a_negative_latent_count_is_refused(tmp_path):
    result = CliRunner().invoke(app, ["microscope", "build", "mlp-1l", "--latents", "-1", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "latents is how many dictionary latents get pages, an integer >= 0" in str(result.exception or "") + \
        result.output
