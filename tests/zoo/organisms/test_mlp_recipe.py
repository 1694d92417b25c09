"""The mlp-1l recipe (the attention-only recipe with an MLP, natural text only, the bundled tokenizer) and its
dictionary's recipe, end to end on a tiny corpus: files, cards and the held-out sample they leave."""

import json

import numpy as np
import torch

from mechscope.transformer.heads import probe_scores
from mechscope.zoo import attn_only
from mechscope.zoo.organisms.attn_only_recipe import batch_at, mlp_recipe, train_attn_only
from mechscope.zoo.organisms.mlp_sae_recipe import NAME, SAMPLE, MlpSAERecipe, train_mlp_sae
from mechscope.zoo.registry import bundle_dir


def test_the_recipe_is_one_block_with_an_mlp_on_natural_text_only():
    r = mlp_recipe()
    cfg = r.config()
    assert (r.name, cfg.n_layers, cfg.d_model, cfg.d_mlp, cfg.d_vocab) == ("mlp-1l", 1, 128, 512, 1024)
    assert r.synthetic_share(0) == r.synthetic_share(3999) == 0.0
    rows = np.arange(40 * 128, dtype=np.uint16).reshape(40, 128) % 1000 + 3
    batch, _ = batch_at(0, r, rows, bos=0)
    natural = {tuple(x) for x in rows.astype(np.int64).tolist()}
    assert all(tuple(x) in natural for x in batch.tolist())   # no repeat rows, no copied spans


def test_tiny_run_of_both_recipes(tmp_path):
    recipe = mlp_recipe(steps=3, batch_size=2, corpus_bytes=200_000, probe_every=3, eval_rows=4)
    card = train_attn_only(tmp_path, recipe, head_scores=probe_scores, progress=False)
    assert card["name"] == "mlp-1l" and "GELU MLP (d_mlp 512)" in card["architecture"]
    assert card["peak_rss_mb"] > 0 and card["final"]["held_out_loss"] > 0
    bundled_tok = (bundle_dir() / "attn_only_1l.tokenizer.json").read_bytes()
    assert (tmp_path / "mlp-1l.tokenizer.json").read_bytes() == bundled_tok   # the organisms share one BPE
    model = attn_only.load(tmp_path / "mlp-1l.safetensors")
    assert model.cfg.d_mlp == 512 and "blocks.0.mlp.W_in" in attn_only.to_transformer_lens(model)

    sae_recipe = MlpSAERecipe(n_latents=64, k=4, steps=3, batch_size=64, buffer_rows=2, eval_rows=4, sample_rows=2,
                              chunk_rows=2, corpus_bytes=200_000)
    out = tmp_path / "sae"
    sae_card = train_mlp_sae(out, sae_recipe, model_file=tmp_path / "mlp-1l.safetensors", data_dir=tmp_path,
                             progress=False)
    on_disk = json.loads((out / f"{NAME}.json").read_text())
    assert on_disk == json.loads(json.dumps(sae_card))
    held = on_disk["held_out"]
    assert held["l0"] <= 4 and held["tokens"] == held["rows"] * 128 and 1 <= held["rows"] <= 4
    assert {"loss_clean", "loss_spliced", "loss_zero_ablated", "loss_recovered", "dead", "dense",
            "chunk_std"} <= set(held)
    assert (out / f"{NAME}_density.png").read_bytes()[:4] == b"\x89PNG"
    from safetensors.torch import load_file
    tensors = load_file(str(out / f"{NAME}.safetensors"))
    assert {v.dtype for v in tensors.values()} == {torch.float16}
    assert load_file(str(out / SAMPLE))["tokens"].shape == (2, 128)
