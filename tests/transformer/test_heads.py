import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.transformer.heads import (ablate_head, ablation_effect, attention_patterns, classify_heads,
                                         default_tokens, duplicate_token_scores, head_scores, induction_scores,
                                         loss, previous_token_scores, repeated_tokens, second_repeat_positions)
from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer

S = 5   # seq_len: 11 positions


def _model(n_layers: int = 1, n_heads: int = 2, **kw) -> AttnOnlyTransformer:
    cfg = dict(n_layers=n_layers, d_model=16, n_heads=n_heads, d_head=4, n_ctx=11, d_vocab=20, init_range=0.3)
    return AttnOnlyTransformer(AttnOnlyConfig(**{**cfg, **kw}), seed=0).eval()


def _force(model: AttnOnlyTransformer, layer: int, head: int, key_of) -> torch.utils.hooks.RemovableHandle:
    """Make head ``layer.head`` attend only to ``key_of(q)`` (or key 0 where that is None)."""
    def hook(_m, _i, scores):
        scores = scores.clone()
        n = scores.shape[-1]
        forced = torch.full((n, n), float("-inf"))
        for q in range(n):
            k = key_of(q)
            forced[q, 0 if k is None else k] = 0.0
        scores[:, head] = forced
        return scores
    return model.blocks[layer].attn.hook_attn_scores.register_forward_hook(hook)


def test_repeated_tokens_shape_seed_low():
    t = repeated_tokens(20, 6, 4, bos=3, seed=1, low=5)
    assert t.shape == (4, 13) and t.dtype == torch.long
    assert (t[:, 0] == 3).all() and torch.equal(t[:, 1:7], t[:, 7:])
    assert int(t[:, 1:].min()) >= 5 and int(t.max()) < 20
    assert torch.equal(t, repeated_tokens(20, 6, 4, bos=3, seed=1, low=5))
    assert not torch.equal(t, repeated_tokens(20, 6, 4, bos=3, seed=2, low=5))
    assert (repeated_tokens(20, 2, 1)[:, 0] == 0).all()
    with pytest.raises(MechscopeError, match="low"):
        repeated_tokens(20, 2, 1, low=20)


def test_default_tokens_fit_n_ctx():
    t = default_tokens(_model())
    assert t.shape == (8, 11)


def test_forced_previous_token_head_scores_one():
    model, tokens = _model(), repeated_tokens(20, S, 3, low=1)
    h = _force(model, 0, 1, lambda q: q - 1 if q >= 1 else None)
    try:
        scores = previous_token_scores(model, tokens)
    finally:
        h.remove()
    assert scores.shape == (1, 2)
    assert scores[0, 1] == pytest.approx(1.0, abs=1e-6) and scores[0, 0] < 0.9


def test_forced_induction_and_duplicate_heads():
    model, tokens = _model(n_heads=3), repeated_tokens(20, S, 3, low=1)
    handles = [_force(model, 0, 0, lambda q: q - S + 1 if q >= 1 + S else None),
               _force(model, 0, 1, lambda q: q - S if q >= 1 + S else None)]
    try:
        ind, dup = induction_scores(model, tokens), duplicate_token_scores(model, tokens)
        scores = head_scores(model, tokens)
    finally:
        for h in handles:
            h.remove()
    assert ind[0, 0] == pytest.approx(1.0, abs=1e-6) and dup[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert ind[0, 1] < 1e-6 and dup[0, 0] < 1e-6
    assert torch.equal(scores["induction"], ind) and torch.equal(scores["duplicate_token"], dup)
    rows = classify_heads(scores)
    assert [(r["head"], r["kind"]) for r in rows] == [("0.0", "induction"), ("0.1", "duplicate_token")]
    assert rows[0]["induction"] == pytest.approx(1.0, abs=1e-6) and set(rows[0]) >= set(scores)


def test_uniform_attention_scores():
    model, tokens = _model(n_heads=1), repeated_tokens(20, S, 2, low=1)
    h = model.blocks[0].attn.hook_attn_scores.register_forward_hook(lambda _m, _i, s: s.masked_fill(s.isfinite(), 0))
    try:
        pats = attention_patterns(model, tokens)
        prev, ind = previous_token_scores(model, tokens), induction_scores(model, tokens)
    finally:
        h.remove()
    n = 2 * S + 1
    assert pats.shape == (1, 2, 1, n, n)
    expected_prev = sum(1 / (q + 1) for q in range(1, n)) / (n - 1)
    expected_second = sum(1 / (q + 1) for q in range(1 + S, n)) / S
    assert float(prev[0, 0]) == pytest.approx(expected_prev, rel=1e-5)
    assert float(ind[0, 0]) == pytest.approx(expected_second, rel=1e-5) and float(ind[0, 0]) < 0.15


def test_non_repeated_tokens_refused():
    model = _model()
    with pytest.raises(MechscopeError, match="BOS"):
        induction_scores(model, torch.arange(11)[None])
    with pytest.raises(MechscopeError, match="odd"):
        duplicate_token_scores(model, torch.zeros(1, 10, dtype=torch.long))


def test_classify_rule_and_several_kinds():
    scores = {"previous_token": torch.tensor([[0.5, 0.1]]), "induction": torch.tensor([[0.4, 0.39]])}
    rows = classify_heads(scores)
    assert [(r["head"], r["kind"]) for r in rows] == [("0.0", "previous_token"), ("0.0", "induction")]
    assert classify_heads(scores, {"induction": 0.3})[-1]["head"] == "0.1"
    with pytest.raises(MechscopeError, match="threshold"):
        classify_heads({"other": torch.zeros(1, 1)})


def test_zero_ablation_zeroes_one_head_only_and_restores():
    model, tokens = _model(n_layers=2), repeated_tokens(20, S, 2)
    name = "blocks.0.attn.hook_z"
    clean = model.run_with_cache(tokens, [name])[1][name]
    with ablate_head(model, 0, 1):
        z = model.run_with_cache(tokens, [name])[1][name]
    assert (z[:, :, 1] == 0).all() and torch.equal(z[:, :, 0], clean[:, :, 0]) and clean[:, :, 1].abs().sum() > 0
    assert torch.equal(model.run_with_cache(tokens, [name])[1][name], clean)   # hook removed
    with pytest.raises(RuntimeError):
        with ablate_head(model, 0, 1):
            raise RuntimeError
    assert not model.blocks[0].attn.hook_z._forward_hooks
    with pytest.raises(MechscopeError, match="no head"):
        with ablate_head(model, 2, 0):
            pass
    with pytest.raises(MechscopeError, match="kind"):
        with ablate_head(model, 0, 0, kind="resample"):
            pass


def test_mean_ablation_uses_reference_mean():
    model, tokens = _model(), repeated_tokens(20, S, 2)
    ref = repeated_tokens(20, S, 3, seed=7)
    name = "blocks.0.attn.hook_z"
    want = model.run_with_cache(ref, [name])[1][name][:, :, 0].mean(dim=(0, 1))
    with ablate_head(model, 0, 0, kind="mean", mean_over=ref) as value:
        z = model.run_with_cache(tokens, [name])[1][name]
    assert torch.allclose(value, want) and torch.allclose(z[:, :, 0], want.expand(2, 2 * S + 1, -1))


def test_loss_and_dead_head_ablation():
    model, tokens = _model(n_layers=2), repeated_tokens(20, S, 2)
    logits = model(tokens).detach()
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 20), tokens[:, 1:].reshape(-1))
    assert loss(model, tokens).detach().item() == pytest.approx(float(ce), rel=1e-5)
    pos = second_repeat_positions(S)
    ce2 = torch.nn.functional.cross_entropy(logits[:, list(pos)].reshape(-1, 20),
                                          tokens[:, [p + 1 for p in pos]].reshape(-1))
    assert loss(model, tokens, positions=pos).detach().item() == pytest.approx(float(ce2), rel=1e-5)
    with pytest.raises(MechscopeError, match="positions"):
        loss(model, tokens, positions=[10])
    with torch.no_grad():
        model.blocks[1].attn.W_O[0] = 0
    eff = ablation_effect(model, 1, 0, tokens)
    assert eff["loss_after"] == pytest.approx(eff["loss_before"], abs=1e-6)
    assert eff["full_loss_after"] == pytest.approx(eff["full_loss_before"], abs=1e-6)
    assert eff["induction_before"].shape == (2, 2) and eff["head"] == "1.0"
    eff = ablation_effect(model, 1, 1, tokens, kind="mean")
    assert eff["loss_after"] != eff["loss_before"]


def _induction_model(V: int = 8, n_ctx: int = 9, beta: float = 30.0) -> AttnOnlyTransformer:
    """A hand-built 2-layer induction circuit: head 0.0 copies the previous token (via shortformer positions)
    into dims [V, 2V); head 1.0 matches the current token against them and copies the attended token into
    dims [2V, 3V), which the unembedding reads."""
    d_head, d_model = n_ctx, 3 * V + n_ctx
    model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=2, d_model=d_model, n_heads=1, d_head=d_head, n_ctx=n_ctx,
                                               d_vocab=V, normalization=None, positional="shortformer"), seed=0)
    eye = torch.eye
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.W_E[:, :V] = eye(V)
        model.pos_embed.W_pos[:, 3 * V:] = eye(n_ctx)
        a0, a1 = model.blocks[0].attn, model.blocks[1].attn
        a0.W_Q[0, 3 * V:] = eye(n_ctx) * beta                                   # query q → u_q
        a0.W_K[0, 3 * V:3 * V + n_ctx - 1, 1:] = eye(n_ctx - 1) * beta          # key k → u_{k+1}
        a0.W_V[0, :V, :V] = eye(V)
        a0.W_O[0, :V, V:2 * V] = eye(V)                                         # previous token → [V, 2V)
        a1.W_Q[0, :V, :V] = eye(V) * beta
        a1.W_K[0, V:2 * V, :V] = eye(V) * beta
        a1.W_V[0, :V, :V] = eye(V)
        a1.W_O[0, :V, 2 * V:3 * V] = eye(V)
        model.unembed.W_U[2 * V:3 * V] = eye(V) * 10
    return model.eval()


def test_ablating_previous_token_head_collapses_induction():
    model = _induction_model()
    r = torch.tensor([[3, 1, 6, 2], [5, 7, 4, 1]])
    tokens = torch.cat([torch.zeros(2, 1, dtype=torch.long), r, r], dim=1)
    eff = ablation_effect(model, 0, 0, tokens)
    assert eff["previous_token_before"][0, 0] > 0.99 and eff["induction_before"][1, 0] > 0.99
    assert eff["induction_after"][1, 0] < 0.3
    assert torch.equal(eff["previous_token_after"][0], eff["previous_token_before"][0])   # its pattern stays
    assert eff["loss_before"] < 0.01 and eff["loss_after"] > 1.0
    rows = classify_heads({k: eff[f"{k}_before"] for k in ("previous_token", "induction")})
    assert [(r["head"], r["kind"]) for r in rows] == [("0.0", "previous_token"), ("1.0", "induction")]


def test_probe_tokens_are_the_organisms_probe_and_probe_scores_score_them():
    from mechscope.transformer.heads import head_scores, probe_scores, probe_tokens

    model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=1, d_model=16, n_heads=2, d_head=4, n_ctx=21,
                                               d_vocab=40), seed=0)
    tokens = probe_tokens(model, bos=0, low=3)
    assert tokens.shape == (16, 21) and bool((tokens[:, 0] == 0).all()) and int(tokens[:, 1:].min()) >= 3
    assert torch.equal(tokens, probe_tokens(model, bos=0, low=3))
    got, want = probe_scores(model, bos=0, low=3), head_scores(model, tokens)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
