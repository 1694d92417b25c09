"""Dictionary scores on a tiny random MLP transformer: an exact dictionary recovers all the loss, a zero one
equals deleting the MLP's activations, zero-ablation equals a model without the MLP, and bad input is refused."""

import math

import pytest
import torch

from mechscope.dictionary.sae import SAEConfig, SparseAutoencoder
from mechscope.dictionary.scores import density_histogram, next_token_loss_sum, score_dictionary
from mechscope.errors import MechscopeError, UnknownNameError
from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer

HOOK = "blocks.0.mlp.hook_post"
D_MLP = 12


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = AttnOnlyTransformer(AttnOnlyConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=10, d_vocab=30,
                                           d_mlp=D_MLP, init_range=0.3), seed=0).eval()
    with torch.no_grad():
        m.blocks[0].mlp.b_out.normal_(0, 0.3)
    return m


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 30, (10, 10), generator=torch.Generator().manual_seed(1))


def _sae(w_dec: torch.Tensor, w_enc: torch.Tensor) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(d_in=w_dec.shape[1], n_latents=w_dec.shape[0], kind="relu"))
    with torch.no_grad():
        sae.W_dec.copy_(w_dec)
        sae.W_enc.copy_(w_enc)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def _mean_loss(model, tokens):
    with torch.no_grad():
        return float(next_token_loss_sum(model(tokens), tokens)) / (tokens.numel() - len(tokens))


def test_an_exact_dictionary_keeps_everything(model, tokens):
    eye = torch.eye(D_MLP)   # relu(x) - relu(-x) = x: latents [x+, x-], decoder [I; -I]
    s = score_dictionary(model, _sae(torch.cat([eye, -eye]), torch.cat([eye, -eye], 1)), HOOK, tokens,
                         batch_size=3)
    assert s.tokens == tokens.numel() and s.rows == len(tokens)
    assert s.fraction_of_variance_explained == pytest.approx(1.0, abs=1e-5)
    assert s.loss_spliced == pytest.approx(s.loss_clean, abs=1e-5)
    assert s.loss_clean == pytest.approx(_mean_loss(model, tokens), abs=1e-5)
    assert s.loss_zero_ablated != pytest.approx(s.loss_clean, abs=1e-3) and s.loss_recovered == pytest.approx(1.0, abs=1e-4)
    # GELU outputs are never exactly 0, so each coordinate fires exactly one of its two latents
    assert s.l0 == pytest.approx(D_MLP) and s.dead == 0
    assert sum(s.frequencies) == pytest.approx(D_MLP)
    assert s.summary()["loss_recovered"] == pytest.approx(1.0, abs=1e-4)


def test_zero_dictionary_and_zero_ablation_are_the_models_without_them(model, tokens):
    s = score_dictionary(model, _sae(torch.zeros(4, D_MLP), torch.zeros(D_MLP, 4)), HOOK, tokens)
    no_acts, no_mlp = AttnOnlyTransformer(model.cfg).eval(), AttnOnlyTransformer(model.cfg).eval()
    no_acts.load_state_dict(model.state_dict())
    no_mlp.load_state_dict(model.state_dict())
    with torch.no_grad():
        no_acts.blocks[0].mlp.W_out.zero_()                            # hook_post = 0: only b_out is left
        no_mlp.blocks[0].mlp.W_out.zero_()
        no_mlp.blocks[0].mlp.b_out.zero_()                             # the MLP's output = 0
    assert s.loss_spliced == pytest.approx(_mean_loss(no_acts, tokens), abs=1e-5)
    assert s.loss_zero_ablated == pytest.approx(_mean_loss(no_mlp, tokens), abs=1e-5)
    assert s.l0 == 0 and s.dead == 4 and s.dense == 0
    assert s.fraction_of_variance_explained < 0.0 or math.isclose(s.fraction_of_variance_explained, 0.0)


def test_dense_latents_are_counted_above_the_threshold(model, tokens):
    w = torch.zeros(3, D_MLP)
    w[0, 0] = 1.0      # latent 0 reads unit 0 positive part, latent 1 its negative part, latent 2 nothing
    w[1, 0] = -1.0
    s = score_dictionary(model, _sae(w, w.T.clone()), HOOK, tokens, dense_above=0.1)
    assert s.frequencies[2] == 0 and s.dead == 1
    assert s.frequencies[0] + s.frequencies[1] == pytest.approx(1.0)
    assert s.dense == sum(f > 0.1 for f in s.frequencies[:2])


def test_an_sae_of_another_width_is_refused_naming_both(model, tokens):
    sae = SparseAutoencoder(SAEConfig(d_in=D_MLP + 1, n_latents=8, kind="topk", k=2))
    with pytest.raises(MechscopeError, match=rf"d_in={D_MLP + 1}.*{HOOK} has width {D_MLP}"):
        score_dictionary(model, sae, HOOK, tokens)


def test_an_unknown_hook_point_names_the_valid_ones(model, tokens):
    sae = SparseAutoencoder(SAEConfig(d_in=D_MLP, n_latents=8, kind="topk", k=2))
    with pytest.raises(UnknownNameError, match=r"unknown hook point 'blocks\.0\.mlp\.hook_pots'.*blocks\.0\.mlp"
                                               r"\.hook_post"):
        score_dictionary(model, sae, "blocks.0.mlp.hook_pots", tokens)
    with pytest.raises(MechscopeError, match="token rows"):
        score_dictionary(model, sae, HOOK, tokens[0])


def test_density_histogram_writes_a_png(tmp_path):
    density_histogram([0.0, 1e-4, 1e-3, 0.5], tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
