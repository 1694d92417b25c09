"""Sparse autoencoders: planted-dictionary recovery, the recovery score, resampling, capture, validation."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mechscope.dictionary.sae import (
    SAEConfig,
    SparseAutoencoder,
    _resample,
    capture_activations,
    recovery_score,
    train_sae,
)
from mechscope.errors import MechscopeError


def planted(seed: int = 0, n_features: int = 8, d: int = 4, rows: int = 4096, max_active: int = 2):
    """``(features [n, d] unit rows, x [rows, d])``: each row is 1..max_active features with values U[0, 1]."""
    g = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(n_features, d, generator=g), dim=-1)
    codes = torch.zeros(rows, n_features)
    active = torch.randint(1, max_active + 1, (rows,), generator=g)
    r = torch.arange(rows)
    for j in range(max_active):
        idx = torch.randint(n_features, (rows,), generator=g)
        val = torch.rand(rows, generator=g) * (active > j)
        codes[r, idx] = torch.maximum(codes[r, idx], val)
    return features, codes @ features


# Recipe that recovers the planted 8-in-4-D dictionary (mean max cosine >= 0.95 over seeds 0-4, ~0.4 s / 1000 steps).
FAST = dict(d_in=4, n_latents=16, lr=1e-2, steps=800, batch_size=256, resample_every=200, dead_after=100)


def test_relu_sae_recovers_planted_dictionary():
    torch.set_num_threads(1)
    features, x = planted(seed=0)
    result = train_sae(x, SAEConfig(kind="relu", l1=0.5, **FAST), progress=False)
    score = recovery_score(result.sae.W_dec, features)
    assert score.mean_max_cosine >= 0.9, str(score)
    assert score.excluded == 0 and score.per_feature.shape == (8,) and score.matched_latent.shape == (8,)
    assert torch.allclose(result.sae.W_dec.norm(dim=-1), torch.ones(16), atol=1e-5)
    last = result.log[-1]
    assert last["step"] == 800 and set(last) == {"step", "mse", "l1", "l0", "dead"}
    assert last["l0"] < 3  # sparse: the data has 1.5 active features per row on average
    assert result.config.kind == "relu" and not result.sae.training


def test_topk_sae_recovers_planted_dictionary():
    torch.set_num_threads(1)
    features, x = planted(seed=1)
    result = train_sae(x, SAEConfig(kind="topk", k=2, **FAST), progress=False)
    assert recovery_score(result.sae.W_dec, features).mean_max_cosine >= 0.9
    assert int((result.sae.encode(x) > 0).sum(-1).max()) <= 2
    assert torch.allclose(result.sae.W_dec.norm(dim=-1), torch.ones(16), atol=1e-5)


def test_streaming_source_and_seeding():
    features, _ = planted()

    def stream(step: int, g: torch.Generator) -> torch.Tensor:
        codes = torch.rand(64, 8, generator=g) * (torch.rand(64, 8, generator=g) < 0.2)
        return codes @ features

    cfg = SAEConfig(d_in=4, n_latents=16, steps=30, lr=1e-2, l1=0.1, resample_every=0)
    a = train_sae(stream, cfg, progress=False)
    b = train_sae(stream, cfg, progress=False)
    assert torch.equal(a.sae.W_dec, b.sae.W_dec)  # same seed, same run
    assert len(a.log) == 30 and a.dead_resampled == 0
    with pytest.raises(MechscopeError, match="d_in=4"):
        train_sae(lambda step, g: torch.zeros(8, 3), cfg, progress=False)
    with pytest.raises(MechscopeError, match=r"\[N, d_in=4\]"):
        train_sae(torch.zeros(10, 5), cfg, progress=False)


def test_encode_decode_shapes_and_decoder_gradient_projection():
    sae = SparseAutoencoder(SAEConfig(d_in=4, n_latents=16, kind="topk", k=3))
    x = torch.randn(2, 5, 4)
    recon, latents = sae(x)
    assert recon.shape == (2, 5, 4) and latents.shape == (2, 5, 16)
    assert (latents >= 0).all() and int((latents > 0).sum(-1).max()) <= 3
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(16))
    (recon.pow(2).sum()).backward()
    sae.project_decoder_grad()
    assert (sae.W_dec.grad * sae.W_dec).sum(-1).abs().max() < 1e-5


def test_recovery_score_identity_orthogonal_permutation_sign():
    eye = torch.eye(4)
    same = recovery_score(eye, eye)
    assert same.mean_max_cosine == pytest.approx(1.0) and same.mmcs_latents == pytest.approx(1.0)
    assert recovery_score(eye[:2], eye[2:]).mean_max_cosine == pytest.approx(0.0)
    perm = torch.tensor([2, 0, 3, 1])
    scaled = recovery_score(3.0 * eye[perm], eye)  # order and scale do not matter
    assert scaled.mean_max_cosine == pytest.approx(1.0)
    assert torch.equal(scaled.matched_latent, torch.argsort(perm))
    # signed cosine: -f does not recover f
    assert recovery_score(-eye, eye).mean_max_cosine == pytest.approx(0.0)
    flipped = recovery_score(torch.cat([-eye[:1], eye[1:]]), eye)
    assert flipped.mean_max_cosine == pytest.approx(0.75)
    assert flipped.per_feature[0] == pytest.approx(0.0)
    # more latents than features: the reverse score drops, the headline one does not
    extra = recovery_score(torch.cat([eye, F.normalize(torch.ones(1, 4), dim=-1)]), eye)
    assert extra.mean_max_cosine == pytest.approx(1.0) and extra.mmcs_latents == pytest.approx((4 + 0.5) / 5)


def test_recovery_score_min_norm_exclusion():
    features = torch.eye(4) * torch.tensor([1.0, 1.0, 0.0, 0.01])[:, None]  # the toy model dropped features 2, 3
    score = recovery_score(torch.eye(4)[:2], features, min_norm=0.1)
    assert score.excluded == 2 and score.mean_max_cosine == pytest.approx(1.0)
    assert torch.isnan(score.per_feature[2:]).all() and score.matched_latent.tolist() == [0, 1, -1, -1]
    assert "2 feature(s) below min_norm excluded" in str(score)
    assert recovery_score(torch.eye(4)[:2], features).excluded == 1  # default min_norm drops only the zero one
    with pytest.raises(MechscopeError, match="below min_norm"):
        recovery_score(torch.eye(4), torch.zeros(3, 4))
    with pytest.raises(MechscopeError, match="same d"):
        recovery_score(torch.eye(4), torch.eye(3))


def test_resampling_revives_a_killed_latent():
    torch.set_num_threads(1)
    _, x = planted(seed=2, rows=1024)
    cfg = SAEConfig(d_in=4, n_latents=16, l1=0.05, lr=1e-2, steps=60, batch_size=128, resample_every=20,
                    dead_after=10, seed=2)
    sae = SparseAutoencoder(cfg)
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0))
        sae.b_enc[3] = -100.0  # latent 3 can never fire
    assert not (sae.encode(x)[:, 3] > 0).any()
    result = train_sae(x, cfg, progress=False, sae=sae)
    assert result.sae is sae and result.dead_resampled > 0
    assert (sae.encode(x)[:, 3] > 0).any()
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(16), atol=1e-5)


def test_resample_resets_adam_state_of_dead_latents():
    _, x = planted(rows=256)
    sae = SparseAutoencoder(SAEConfig(d_in=4, n_latents=16))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    recon, latents = sae(x)
    (recon - x).pow(2).sum().backward()
    opt.step()
    dead = torch.zeros(16, dtype=torch.bool)
    dead[[1, 5]] = True
    _resample(sae, opt, dead, x, torch.Generator().manual_seed(0))
    for param, rows in ((sae.W_dec, sae.W_dec[[1, 5]]), (sae.W_enc, sae.W_enc[:, [1, 5]].T)):
        state = opt.state[param]
        dead_state = state["exp_avg_sq"][[1, 5]] if param is sae.W_dec else state["exp_avg_sq"][:, [1, 5]]
        assert (dead_state == 0).all() and (state["exp_avg_sq"] != 0).any()
    assert torch.allclose(sae.W_dec[[1, 5]].norm(dim=-1), torch.ones(2))
    assert (sae.b_enc[[1, 5]] == 0).all()
    # encoder column along the decoder row, at 0.2x the alive encoder columns' mean norm
    alive_norm = sae.W_enc[:, ~dead].norm(dim=0).mean()
    assert torch.allclose(sae.W_enc[:, 1], sae.W_dec[1] * 0.2 * alive_norm, atol=1e-6)


def test_capture_activations_conv_and_sequence():
    conv = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 2, 1)).eval()
    images = [torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)]
    rows = capture_activations(conv, "1", images)
    assert rows.shape == (2 * 2 * 16, 5) and not rows.requires_grad
    expected = conv[1](conv[0](images[0]))
    assert torch.allclose(rows[:16], expected[0].permute(1, 2, 0).reshape(16, 5))  # row = one (b, h, w) position
    capped = capture_activations(conv, "1", [(torch.arange(2), im) for im in images], max_rows=40)
    assert capped.shape == (40, 5) and torch.allclose(capped, rows[:40])

    seq = nn.Sequential(nn.Embedding(10, 6), nn.Linear(6, 3))
    tokens = torch.randint(10, (4, 7))
    out = capture_activations(seq, "1", [tokens])
    assert out.shape == (4 * 7, 3) and torch.allclose(out[7:14], seq(tokens)[1])
    with pytest.raises(MechscopeError, match="max_rows"):
        capture_activations(seq, "1", [tokens], max_rows=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(d_in=0, n_latents=4), "d_in"),
        (dict(d_in=4, n_latents=2.5), "n_latents"),
        (dict(d_in=4, n_latents=8, kind="gated"), "kind"),
        (dict(d_in=4, n_latents=8, kind="topk", k=9), "k"),
        (dict(d_in=4, n_latents=8, l1=-1.0), "l1"),
        (dict(d_in=4, n_latents=8, lr=0), "lr"),
        (dict(d_in=4, n_latents=8, batch_size=0), "batch_size"),
        (dict(d_in=4, n_latents=8, resample_every=-1), "resample_every"),
        (dict(d_in=4, n_latents=8, dead_after=0), "dead_after"),
        (dict(d_in=4, n_latents=8, steps=-5), "steps"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(MechscopeError, match=match):
        SAEConfig(**kwargs)
