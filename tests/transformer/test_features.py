"""feature_contexts against brute force (exact top-k indices, values, windows), whatever the batch size and where a
scan is resumed; ties; histograms and firing counts; decoding; the errors; logit effects and the monosemanticity
measure on hand-checkable inputs."""

import math

import pytest
import torch
from torch import nn

from mechscope.dictionary.sae import SAEConfig, SparseAutoencoder
from mechscope.errors import MechscopeError, UnknownNameError
from mechscope.transformer.features import feature_contexts, load_contexts
from mechscope.transformer.monosemanticity import (logit_effects, monosemanticity, random_directions, token_class,
                                                   unit_direction)
from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer

HOOK = "blocks.0.mlp.hook_post"
N, P, K, C = 13, 8, 5, 2


@pytest.fixture(scope="module")
def model():
    return AttnOnlyTransformer(AttnOnlyConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=P, d_vocab=20,
                                              d_mlp=24), seed=0).eval()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 20, (N, P), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def sae():
    s = SparseAutoencoder(SAEConfig(d_in=24, n_latents=40, kind="topk", k=3, seed=2))
    with torch.no_grad():
        s.b_enc.normal_(0, 0.3, generator=torch.Generator().manual_seed(3))
    return s.eval()


class Letters:
    """A tokenizer stub: id i is the letter chr(97 + i)."""

    def decode(self, ids):
        return "".join(chr(97 + i) for i in ids)


def brute(acts, tokens, k, positive_only, context=C):
    """Per unit of ``acts [N*P, U]``: the top k by (value desc, flat index asc), with windows (``context`` either side)."""
    p = tokens.shape[1]
    padded = torch.full((tokens.shape[0], p + 2 * context), -1, dtype=torch.int64)
    padded[:, context:context + p] = tokens
    out = []
    for u in range(acts.shape[1]):
        col = acts[:, u]
        order = [int(i) for i in torch.sort(col, descending=True, stable=True).indices
                 if not positive_only or col[i] > 0][:k]
        out.append(([float(col[i]) for i in order], order,
                    [padded[i // p, i % p: i % p + 2 * context + 1].tolist() for i in order]))
    return out


def assert_matches(fc, expected):
    for u, (vals, idx, wins) in enumerate(expected):
        n = len(idx)
        assert fc.index[u, :n].tolist() == idx and (fc.index[u, n:] == -1).all()
        assert fc.values[u, :n].tolist() == vals and (fc.values[u, n:] == -math.inf).all()
        assert fc.windows[u, :n].tolist() == wins


def hook_acts(model, tokens, batch_size=None):
    """The hook's activations ``[N*P, 24]``, run in the scan's batches (so values agree to the bit)."""
    bs = batch_size or len(tokens)
    with torch.no_grad():
        return torch.cat([model.run_with_cache(tokens[i:i + bs], [HOOK])[1][HOOK].reshape(-1, 24)
                          for i in range(0, len(tokens), bs)])


@pytest.mark.parametrize("batch_size", [1, 4, 13])
def test_neurons_latents_and_directions_equal_brute_force(model, tokens, sae, batch_size):
    x = hook_acts(model, tokens, batch_size)
    dirs = random_directions(6, 24, seed=4)
    with torch.no_grad():
        cases = [({}, x, False), ({"sae": sae}, sae.encode(x), True), ({"units": dirs}, x @ dirs.T, False)]
    for kwargs, acts, positive in cases:
        fc = feature_contexts(model, tokens, HOOK, k=K, context=C, batch_size=batch_size, **kwargs)
        assert_matches(fc, brute(acts, tokens, K, positive))
        assert fc.fired.tolist() == (acts > 0).sum(0).tolist() and (fc.rows, fc.tokens) == (N, N * P)


def test_latents_that_rarely_fire_keep_only_their_firing_contexts(model, tokens, sae):
    fc = feature_contexts(model, tokens, HOOK, sae=sae, k=K, context=C)
    rare = torch.nonzero(fc.fired < K).flatten()
    assert len(rare) > 0   # the fixture has latents that fire fewer than K times: empty slots are tested
    for u in rare.tolist():
        assert int((fc.index[u] >= 0).sum()) == int(fc.fired[u])


def test_ties_are_broken_by_the_smaller_row_and_position_at_any_batch_size():
    class Steps(nn.Module):   # activations 0, 1 or 2 by token: many exact ties, also at the k-th slot
        def __init__(self):
            super().__init__()
            self.hook = nn.Identity()

        def forward(self, t):
            return self.hook(torch.stack([t % 3, (t // 3) % 2, torch.zeros_like(t)], -1).float())

    tokens = torch.randint(0, 9, (11, P), generator=torch.Generator().manual_seed(5))
    acts = Steps()(tokens).reshape(-1, 3)
    expected = brute(acts, tokens, K, False)
    for bs in (1, 3, 11):
        assert_matches(feature_contexts(Steps(), tokens, "hook", k=K, context=C, batch_size=bs), expected)


def test_a_resumed_and_reloaded_scan_equals_one_pass(model, tokens, sae, tmp_path):
    whole = feature_contexts(model, tokens, HOOK, sae=sae, k=K, context=C, batch_size=4)
    part = feature_contexts(model, tokens[:6], HOOK, sae=sae, k=K, context=C, batch_size=4)
    part.save(tmp_path / "state.npz")
    resumed = feature_contexts(model, tokens[6:], HOOK, sae=sae, state=load_contexts(tmp_path / "state.npz"))
    for name in ("values", "index", "windows", "fired", "edges", "counts"):
        assert torch.equal(getattr(resumed, name), getattr(whole, name)), name
    assert (resumed.rows, resumed.tokens, resumed.kind) == (N, N * P, "latent")
    with pytest.raises(MechscopeError, match="the state scanned latents"):
        feature_contexts(model, tokens, HOOK, state=resumed)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(MechscopeError, match="feature contexts"):
        load_contexts(tmp_path / "bad.npz")


def test_histograms_count_every_token_or_every_firing(model, tokens, sae):
    neurons = feature_contexts(model, tokens, HOOK, k=K, bins=10, batch_size=4)
    assert neurons.counts.sum(1).tolist() == [N * P] * 24 and neurons.edges.shape == (24, 11)
    x = hook_acts(model, tokens, 4)
    u = 7
    edges, counts = neurons.histogram(u)
    first = x[: 4 * P, u]   # the range comes from the first batch, widened: all of it is inside
    assert edges[0] < float(first.min()) and edges[-1] > float(first.max())
    expected = torch.histc(x[:, u].clamp(edges[0], edges[-1] - 1e-6), bins=10, min=edges[0], max=edges[-1])
    assert counts == expected.long().tolist()
    latents = feature_contexts(model, tokens, HOOK, sae=sae, k=K, bins=10)
    assert latents.edges.dim() == 1 and latents.counts.sum(1).tolist() == latents.fired.tolist()


def test_contexts_decode_the_window_and_mark_the_max_token(model, tokens):
    fc = feature_contexts(model, tokens, HOOK, k=K, context=C, tokenizer=Letters())
    top = fc.contexts(3)[0]
    row, pos = top.row, top.position
    assert row * P + pos == int(fc.index[3, 0]) and top.value == float(fc.values[3, 0])
    letters = Letters().decode
    expected = (letters(tokens[row, max(pos - C, 0):pos].tolist()) + f"[[{letters([int(tokens[row, pos])])}]]"
                + letters(tokens[row, pos + 1:pos + C + 1].tolist()))
    assert top.text == expected and top.max_token == letters([int(tokens[row, pos])])
    assert len(fc.contexts(3)) == K and float(fc.frequency[3]) == int(fc.fired[3]) / (N * P)


def test_bad_input_names_what_is_valid(model, tokens, sae):
    with pytest.raises(UnknownNameError, match=r"blocks\.0\.mlp\.hook_post"):
        feature_contexts(model, tokens, "blocks.0.mlp.hook_mid")
    wrong = SparseAutoencoder(SAEConfig(d_in=16, n_latents=8, kind="topk", k=2))
    with pytest.raises(MechscopeError, match=r"d_in=16, but blocks\.0\.mlp\.hook_post has width 24"):
        feature_contexts(model, tokens, HOOK, sae=wrong)
    fc = feature_contexts(model, tokens[:2], HOOK, sae=sae, k=2)
    with pytest.raises(MechscopeError, match=r"valid latents are 0\.\.39"):
        fc.contexts(40, Letters())
    with pytest.raises(MechscopeError, match=r"valid neurons are 0\.\.23"):
        unit_direction(model, 24)
    with pytest.raises(MechscopeError, match=r"rows of 9 tokens are longer than the model's context \(8\)"):
        feature_contexts(model, torch.zeros(2, P + 1, dtype=torch.long), HOOK)
    with pytest.raises(MechscopeError, match="directions must be"):
        feature_contexts(model, tokens, HOOK, units=torch.ones(3, 5))


def test_logit_effects_are_the_unit_direction_through_w_u(model, sae):
    w_out, w_u = model.blocks[0].mlp.W_out.detach(), model.unembed.W_U.detach()
    assert torch.equal(unit_direction(model, 5), w_out[5])
    torch.testing.assert_close(unit_direction(model, 5, sae), sae.W_dec.detach()[5] @ w_out)
    e = logit_effects(model, unit_direction(model, 5, sae), k=3, tokenizer=Letters())
    logits = (sae.W_dec.detach()[5] @ w_out) @ w_u
    assert [i for i, _, _ in e.promoted] == logits.topk(3).indices.tolist()
    assert [i for i, _, _ in e.suppressed] == logits.topk(3, largest=False).indices.tolist()
    assert e.promoted[0][1] == chr(97 + e.promoted[0][0])


def test_token_classes_and_the_concentration_measure(model, tokens):
    assert [token_class(t) for t in ["<|bos|>", "\n\n   ", "007", " (", " def", " Error", " self", "_x", "é"]] == [
        "special", "whitespace", "digit", "punctuation", "keyword", "upper", "lower", "other", "other"]
    fc = feature_contexts(model, tokens, HOOK, k=K, context=C)
    m = monosemanticity(fc, Letters(), by="token")
    for u, score in m.scores.items():   # identity: the share of the most common max token among the top K
        peaks = fc.windows[u, :, C].tolist()
        assert score == max(peaks.count(t) for t in peaks) / K
        assert (fc.values[u] > 0).all()
    assert m.scored == int((fc.values > 0).all(1).sum()) and m.mean == pytest.approx(sum(m.scores.values()) / m.scored)
    assert monosemanticity(fc, Letters(), by="class").mean == 1.0   # every letter token is a 'lower' word
