import pytest
import torch

from mechscope.capture import capture
from mechscope.errors import MechscopeError
from mechscope.zoo.attn_only import (AttnOnlyConfig, AttnOnlyTransformer, fold_layer_norm, from_transformer_lens,
                                     load, save, to_transformer_lens, transformer_lens_config, with_layer_norm_folded)

SMALL = dict(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=16, d_vocab=50)


def _model(seed: int = 0, **overrides) -> AttnOnlyTransformer:
    model = AttnOnlyTransformer(AttnOnlyConfig(**{**SMALL, **overrides}), seed=seed)
    with torch.no_grad():   # non-trivial LayerNorm weights and biases, so folding and conversion are tested
        g = torch.Generator().manual_seed(seed + 1)
        for name, p in model.named_parameters():
            if not name.split(".")[-1].startswith("W_"):
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_causal_and_hook_points_are_consistent():
    model = _model()
    tokens = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    changed = tokens.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 50
    torch.testing.assert_close(model(changed)[:, :8], logits[:, :8])          # the future does not leak back
    pattern = cache["blocks.1.attn.hook_pattern"]
    assert torch.allclose(pattern.sum(-1), torch.ones(2, 4, 12)) and float(pattern.triu(1).abs().max()) == 0
    attn = model.blocks[0].attn
    per_head = cache["blocks.0.attn.hook_result"].sum(2) + attn.b_O
    torch.testing.assert_close(per_head, cache["blocks.0.hook_attn_out"])
    resid = cache["blocks.1.hook_resid_post"]
    torch.testing.assert_close(capture(model, tokens, ["blocks.1.hook_resid_post"])["blocks.1.hook_resid_post"], resid)


def test_shortformer_keeps_positions_out_of_values_and_the_residual_stream():
    model = _model(positional="shortformer")
    tokens = torch.randint(0, 50, (1, 6))
    _, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(cache["blocks.0.hook_resid_pre"], model.embed.W_E[tokens])
    standard = _model(positional="standard")
    _, cache = standard.run_with_cache(tokens)
    torch.testing.assert_close(cache["blocks.0.hook_resid_pre"],
                               standard.embed.W_E[tokens] + standard.pos_embed.W_pos[:6])


@pytest.mark.parametrize("mlp", [None, 24])
def test_folding_layer_norm_keeps_the_logits(mlp):
    model = _model(d_mlp=mlp)
    folded = fold_layer_norm(model)
    tokens = torch.randint(0, 50, (3, 16))
    assert folded.cfg.normalization == "LNPre" and not hasattr(folded.blocks[0].ln1, "w")
    torch.testing.assert_close(folded(tokens), model(tokens), atol=1e-4, rtol=1e-4)
    with pytest.raises(MechscopeError, match="needs normalization 'LN'"):
        fold_layer_norm(folded)
    assert with_layer_norm_folded(folded) is folded               # nothing to fold: the model itself
    again = with_layer_norm_folded(model)
    assert again is not model and again.cfg.normalization == "LNPre"
    torch.testing.assert_close(again(tokens), folded(tokens))


def test_save_and_load_round_trip_and_refuse_bad_files(tmp_path):
    model = _model(d_mlp=16)
    path = save(model, tmp_path / "m.safetensors")
    again = load(path)
    assert again.cfg == model.cfg
    tokens = torch.randint(0, 50, (2, 9))
    assert torch.equal(again(tokens), model(tokens))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(MechscopeError, match="not a readable safetensors file"):
        load(path)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(MechscopeError, match="no attention-only transformer config"):
        load(tmp_path / "other.safetensors")


def test_bad_inputs_and_configs_fail_clearly():
    model = _model()
    with pytest.raises(MechscopeError, match="exceed the model's n_ctx = 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(MechscopeError, match=r"token ids must lie in \[0, 50\)"):
        model(torch.full((1, 3), 50))
    with pytest.raises(MechscopeError, match="integer tensor"):
        model(torch.zeros(1, 3))
    with pytest.raises(MechscopeError, match="positional must be one of"):
        AttnOnlyConfig(positional="rotary")
    with pytest.raises(MechscopeError, match="hook_patern"):
        model.run_with_cache(torch.zeros(1, 3, dtype=torch.long), ["blocks.0.attn.hook_patern"])
    with pytest.raises(MechscopeError, match="missing"):
        from_transformer_lens({"embed.W_E": torch.zeros(50, 32)}, model.cfg)


# ---- differential tests against TransformerLens --------------------------------------------------------------

CONFIGS = [dict(positional="shortformer", normalization="LN"), dict(positional="standard", normalization="LN", d_mlp=24),
           dict(positional="shortformer", normalization=None)]


@pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated")
@pytest.mark.parametrize("overrides", CONFIGS)
def test_logits_and_activations_match_transformer_lens_both_ways(overrides):
    import transformer_lens as tl   # a test extra: missing, this fails rather than skips
    ours = _model(seed=3, **overrides)
    cfg = ours.cfg
    theirs = tl.HookedTransformer(tl.HookedTransformerConfig(**transformer_lens_config(cfg)))
    theirs.load_state_dict(to_transformer_lens(ours), strict=True)
    theirs.eval()
    tokens = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(1))
    logits, cache = ours.run_with_cache(tokens)
    their_logits, their_cache = theirs.run_with_cache(tokens)
    torch.testing.assert_close(logits, their_logits, atol=1e-4, rtol=1e-4)
    for name in ("blocks.0.attn.hook_pattern", "blocks.1.attn.hook_z", "blocks.1.hook_resid_post"):
        torch.testing.assert_close(cache[name], their_cache[name], atol=1e-4, rtol=1e-4)
    back = AttnOnlyTransformer(cfg)
    back.load_state_dict(from_transformer_lens(theirs.state_dict(), cfg))
    torch.testing.assert_close(back(tokens), their_logits, atol=1e-4, rtol=1e-4)


def test_the_same_model_saves_to_the_same_bytes(tmp_path):
    model = _model()
    a, b = save(model, tmp_path / "a.safetensors"), save(load(save(model, tmp_path / "c.safetensors")),
                                                         tmp_path / "b.safetensors")
    assert a.read_bytes() == b.read_bytes()
