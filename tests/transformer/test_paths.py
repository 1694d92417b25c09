import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.transformer.paths import PathExpansion, path_expansion
from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer, fold_layer_norm

V = 20


def _model(n_layers: int, normalization: str | None, positional: str, seed: int = 0) -> AttnOnlyTransformer:
    cfg = AttnOnlyConfig(n_layers=n_layers, d_model=16, n_heads=3, d_head=4, n_ctx=8, d_vocab=V,
                         normalization=normalization, positional=positional, init_range=0.4)
    model = AttnOnlyTransformer(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():   # non-zero biases (and LN weights) so every bias path is exercised
        for name, p in model.named_parameters():
            leaf = name.split(".")[-1]
            if leaf.startswith("b_") or leaf == "b":
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif leaf == "w":
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def _tokens(batch: int = 3, pos: int = 7) -> torch.Tensor:
    return torch.randint(0, V, (batch, pos), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("normalization", [None, "LNPre"])
@pytest.mark.parametrize("positional", ["standard", "shortformer"])
def test_terms_sum_to_logits(n_layers, normalization, positional):
    if normalization == "LNPre":   # the realistic route: an LN model folded
        model = fold_layer_norm(_model(n_layers, "LN", positional))
    else:
        model = _model(n_layers, None, positional)
    tokens = _tokens()
    paths = path_expansion(model, tokens)
    assert isinstance(paths, PathExpansion)
    assert paths.direct.shape == (3, 7, V) and paths.heads.shape == (n_layers, 3, 3, 7, V)
    assert torch.allclose(paths.total(), model(tokens).detach(), atol=1e-4) and paths.max_error() < 1e-4
    for term in (paths.direct, paths.heads, paths.biases):   # no vacuous pass: every term matters
        assert term.abs().max() > 1e-2
    if n_layers == 2:
        assert paths.virtual.shape == (3, 3, 3, 7, V) and paths.virtual.abs().max() > 1e-3
        assert torch.allclose(paths.virtual.sum((0, 1)), paths.virtual_sum, atol=1e-5)
    else:
        assert paths.virtual is None and paths.virtual_sum is None
    assert paths.patterns.shape == (n_layers, 3, 3, 7, 7)
    assert len(paths.scales) == (n_layers + 1 if normalization == "LNPre" else 0)


def test_one_layer_head_term_matches_hook_result():
    model = _model(1, None, "standard")
    tokens = _tokens()
    paths = path_expansion(model, tokens)
    _, cache = model.run_with_cache(tokens, ["blocks.0.attn.hook_result"])
    v_bias = torch.einsum("he,hed->hd", model.blocks[0].attn.b_V, model.blocks[0].attn.W_O)
    result = cache["blocks.0.attn.hook_result"].permute(2, 0, 1, 3) - v_bias[:, None, None]   # bias-free
    assert torch.allclose(paths.heads[0], (result @ model.unembed.W_U).detach(), atol=1e-4)
    direct = (model.embed.W_E[tokens] + model.pos_embed.W_pos[:7]) @ model.unembed.W_U
    assert torch.allclose(paths.direct, direct.detach(), atol=1e-5)


def test_zero_W_O_head_contributes_zero():
    model = _model(2, None, "shortformer")
    with torch.no_grad():
        model.blocks[0].attn.W_O[1] = 0
        model.blocks[1].attn.W_O[2] = 0
    paths = path_expansion(model, _tokens())
    assert (paths.heads[0, 1] == 0).all() and (paths.heads[1, 2] == 0).all()
    assert (paths.virtual[1] == 0).all() and (paths.virtual[:, 2] == 0).all()
    assert paths.heads[0, 0].abs().max() > 1e-2 and paths.max_error() < 1e-4


def test_keep_virtual_false_keeps_the_sum():
    model, tokens = _model(2, None, "standard"), _tokens()
    full, lean = path_expansion(model, tokens), path_expansion(model, tokens, keep_virtual=False)
    assert lean.virtual is None and torch.allclose(lean.virtual_sum, full.virtual_sum, atol=1e-5)
    assert torch.allclose(lean.total(), full.total(), atol=1e-5)


def test_refusals():
    with pytest.raises(MechscopeError, match="fold_layer_norm"):
        path_expansion(_model(1, "LN", "standard"), _tokens())
    three = AttnOnlyTransformer(AttnOnlyConfig(n_layers=3, d_model=8, n_heads=1, d_head=4, n_ctx=8, d_vocab=V,
                                               normalization=None), seed=0)
    with pytest.raises(MechscopeError, match="3 layers"):
        path_expansion(three, _tokens())
    mlp = AttnOnlyTransformer(AttnOnlyConfig(n_layers=1, d_model=8, n_heads=1, d_head=4, n_ctx=8, d_vocab=V,
                                             d_mlp=16, normalization=None), seed=0)
    with pytest.raises(MechscopeError, match="MLP"):
        path_expansion(mlp, _tokens())
