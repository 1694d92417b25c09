"""The transformer analyses on TransformerLens 4.x's ``TransformerBridge``, differentially, offline.

Two tiny random bridges, built in code (no hub download):

* ``boot_native``'s attention-only model (LNPre, learned positions) holding *our* ``AttnOnlyTransformer``'s
  weights: same logits, so every analysis on the bridge must equal the same analysis on ours (which
  tests/transformer/ checks against TransformerLens 3.9's ``HookedTransformer``);
* a Hugging Face ``GPT2LMHeadModel`` (LayerNorm, MLPs) behind ``boot_transformers``: weights, circuits,
  composition and copying scores are checked against the same quantities built by hand from the HF weights and
  against TL 4's own (``bridge.OV``, ``bridge.QK``, ``all_composition_scores``); head detectors against the
  attention weights HF itself returns; head ablation against HF with that head's slice of ``c_proj``'s input
  zeroed.

They run against the ``TransformerBridge`` that TransformerLens 3.9 (the dev venv) already ships, and against
TL 4.x in ``.venv-tl4`` (``make test-tl4``, with ``MECHSCOPE_REQUIRE_TL4=1``: fails unless 4.x is installed).
"""

import copy
import os
from importlib.metadata import PackageNotFoundError, version

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _tl_major() -> int | None:
    try:
        return int(version("transformer-lens").split(".")[0])
    except PackageNotFoundError:
        return None


if os.environ.get("MECHSCOPE_REQUIRE_TL4") == "1":
    assert (_tl_major() or 0) >= 4, "MECHSCOPE_REQUIRE_TL4=1 but TransformerLens 4.x is not installed"
# TransformerLens 3.9 (the dev venv) already ships the same TransformerBridge: the tests run there too, and
# `make test-tl4` runs them on the 4.x release line.
pytest.importorskip("transformer_lens.model_bridge", reason="this TransformerLens has no TransformerBridge")

import importlib  # noqa: E402

from transformer_lens.model_bridge import TransformerBridge  # noqa: E402

importlib.import_module("transformer_lens.model_bridge.sources.native")   # attaches TransformerBridge.boot_native

from mechscope.errors import MechscopeError  # noqa: E402
from mechscope.transformer.circuits import (composition_scores, copying_scores, direct_path,  # noqa: E402
                                            ov_circuit, ov_eigenvalues, qk_circuit, weights)
from mechscope.transformer.heads import (ablate_head, ablation_effect, attention_patterns,  # noqa: E402
                                         head_scores, repeated_tokens)
from mechscope.transformer.models import describe  # noqa: E402
from mechscope.transformer.paths import path_expansion  # noqa: E402
from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer  # noqa: E402

torch.set_num_threads(1)
N_LAYERS, D_MODEL, N_HEADS, D_HEAD, N_CTX, D_VOCAB = 2, 32, 4, 8, 16, 50


# ---- the native attention-only bridge with our model's weights ---------------------------------------------------


def _native_config(**over):
    cfg = dict(n_layers=N_LAYERS, d_model=D_MODEL, n_heads=N_HEADS, d_head=D_HEAD, n_ctx=N_CTX, d_vocab=D_VOCAB,
               attn_only=True, normalization_type="LNPre", positional_embedding_type="standard", seed=0)
    return {**cfg, **over}


def _copy_into_native(ours: AttnOnlyTransformer, bridge) -> None:
    """Our TL-layout weights into the native model's ``nn.Linear``s (``[out, in]``, heads concatenated)."""
    params = {n.replace("._original_component", ""): p for n, p in bridge.original_model.named_parameters()}
    H, dh, d = N_HEADS, D_HEAD, D_MODEL
    new = {"tok_embed.weight": ours.embed.W_E, "pos.weight": ours.pos_embed.W_pos, "head.weight": ours.unembed.W_U.T}
    if "head.bias" in params:     # TL 3.9's native model has a b_U; 4.3's has none (ours is kept 0 for it)
        new["head.bias"] = ours.unembed.b_U
    for i, block in enumerate(ours.blocks):
        a = block.attn
        for x in "qkv":
            W, b = getattr(a, f"W_{x.upper()}"), getattr(a, f"b_{x.upper()}")
            new[f"layers.{i}.attn.{x}.weight"] = W.permute(0, 2, 1).reshape(H * dh, d)
            new[f"layers.{i}.attn.{x}.bias"] = b.reshape(H * dh)
        new[f"layers.{i}.attn.o.weight"] = a.W_O.reshape(H * dh, d).T
        new[f"layers.{i}.attn.o.bias"] = a.b_O
    assert sorted(new) == sorted(params), sorted(params)
    with torch.no_grad():
        for name, value in new.items():
            params[name].copy_(value)


@pytest.fixture(scope="module")
def native_pair():
    ours = AttnOnlyTransformer(AttnOnlyConfig(n_layers=N_LAYERS, d_model=D_MODEL, n_heads=N_HEADS, d_head=D_HEAD,
                                              n_ctx=N_CTX, d_vocab=D_VOCAB, normalization="LNPre",
                                              positional="standard", init_range=0.3), seed=1).eval()
    with torch.no_grad():   # random biases (the native head has no b_U: keep ours 0)
        g = torch.Generator().manual_seed(2)
        for block in ours.blocks:
            for name in ("b_Q", "b_K", "b_V", "b_O"):
                p = getattr(block.attn, name)
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        ours.unembed.b_U.zero_()
    bridge = TransformerBridge.boot_native(_native_config())
    _copy_into_native(ours, bridge)
    bridge.eval()
    return ours, bridge


def _tokens(batch=3, seq_len=7, seed=0):
    return repeated_tokens(D_VOCAB, seq_len, batch, bos=0, seed=seed, low=1)


def test_native_bridge_is_our_model(native_pair):
    ours, bridge = native_pair
    spec = describe(bridge)
    assert (spec.n_layers, spec.n_heads, spec.d_head, spec.normalization, spec.positional, spec.d_mlp) == \
        (N_LAYERS, N_HEADS, D_HEAD, "LNPre", "standard", None)   # bridge.cfg.d_mlp is filled in; attn_only wins
    tokens = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(bridge(tokens), ours(tokens), atol=1e-5, rtol=0)
    for name, w in weights(ours).items():
        torch.testing.assert_close(weights(bridge)[name], w, atol=0, rtol=0)


def test_circuits_on_native_bridge_equal_ours_and_tl4s_own(native_pair):
    ours, bridge = native_pair
    for kind in "qkv":
        mine = composition_scores(bridge, kind)
        torch.testing.assert_close(mine, composition_scores(ours, kind), atol=1e-6, rtol=0)
        torch.testing.assert_close(mine, bridge.all_composition_scores(kind.upper()).scores.detach(),
                                   atol=1e-5, rtol=0)
    torch.testing.assert_close(copying_scores(bridge), copying_scores(ours), atol=1e-5, rtol=0)
    torch.testing.assert_close(qk_circuit(bridge).AB, (bridge.W_E @ bridge.QK @ bridge.W_E.T).AB.detach(),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(ov_circuit(bridge).AB, (bridge.W_E @ bridge.OV @ bridge.W_U).AB.detach(),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(qk_circuit(bridge, 1, positional=True).AB, qk_circuit(ours, 1, positional=True).AB,
                               atol=1e-6, rtol=0)


def test_path_expansion_on_native_bridge_sums_to_its_logits_and_equals_ours(native_pair):
    ours, bridge = native_pair
    tokens = _tokens(batch=2, seq_len=6, seed=3)
    theirs, mine = path_expansion(bridge, tokens), path_expansion(ours, tokens)
    assert theirs.max_error() < 1e-4
    for name in ("direct", "heads", "virtual", "biases", "patterns"):
        torch.testing.assert_close(getattr(theirs, name), getattr(mine, name), atol=1e-4, rtol=0)
    for name, scale in mine.scales.items():
        torch.testing.assert_close(theirs.scales[name], scale, atol=1e-5, rtol=0)


def test_head_detectors_and_ablation_on_native_bridge_equal_ours(native_pair):
    ours, bridge = native_pair
    tokens = _tokens(batch=4, seq_len=7, seed=5)
    for kind, value in head_scores(ours, tokens).items():
        torch.testing.assert_close(head_scores(bridge, tokens)[kind], value, atol=1e-5, rtol=0)
    for kind in ("zero", "mean"):
        theirs, mine = ablation_effect(bridge, 1, 2, tokens, kind=kind), ablation_effect(ours, 1, 2, tokens, kind=kind)
        assert theirs["loss_after"] != pytest.approx(theirs["loss_before"], abs=1e-6)   # the ablation did something
        for key, value in mine.items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(theirs[key], value, atol=1e-5, rtol=0)
            elif isinstance(value, float):
                assert theirs[key] == pytest.approx(value, abs=1e-5), key


def test_grouped_query_and_rotary_bridges():
    gqa = TransformerBridge.boot_native(_native_config(n_key_value_heads=2, seed=4))
    w = weights(gqa)
    assert gqa.blocks[0].attn.W_K.shape[0] == 2 and w["W_K"].shape == (N_LAYERS, N_HEADS, D_MODEL, D_HEAD)
    torch.testing.assert_close(w["W_K"][:, 1], w["W_K"][:, 0])       # heads 0 and 1 share K/V head 0
    torch.testing.assert_close(qk_circuit(gqa).AB, (gqa.W_E @ gqa.QK @ gqa.W_E.T).AB.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(ov_circuit(gqa).AB, (gqa.W_E @ gqa.OV @ gqa.W_U).AB.detach(), atol=1e-5, rtol=0)
    for kind in "qkv":
        torch.testing.assert_close(composition_scores(gqa, kind), gqa.all_composition_scores(kind.upper()).scores,
                                   atol=1e-5, rtol=0)
    rotary = TransformerBridge.boot_native(_native_config(positional_embedding_type="rotary", seed=5))
    assert "W_pos" not in weights(rotary) and describe(rotary).positional == "rotary"
    assert copying_scores(rotary).shape == (N_LAYERS, N_HEADS)
    with pytest.raises(MechscopeError, match="no learned positional embedding"):
        qk_circuit(rotary, positional=True)
    paths = path_expansion(rotary.eval(), _tokens(batch=2, seq_len=5))   # rotary only moves Q/K: values stay linear
    assert paths.max_error() < 1e-4


# ---- a Hugging Face GPT-2 behind boot_transformers --------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({f"t{i}": i for i in range(D_VOCAB)}, unk_token="t0"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # add_bos_token / name_or_path: otherwise TL re-loads the tokenizer by name from the hub to add a BOS
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="t0", eos_token="t0", unk_token="t0",
                                        pad_token="t0", add_bos_token=True, name_or_path="mechscope-tiny")
    torch.manual_seed(0)
    config = GPT2Config(n_layer=N_LAYERS, n_head=N_HEADS, n_embd=D_MODEL, n_positions=N_CTX, vocab_size=D_VOCAB,
                        n_inner=64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.3,
                        tie_word_embeddings=False)
    config._attn_implementation = "eager"     # so that HF returns its attention weights
    hf = GPT2LMHeadModel(config).eval()
    reference = copy.deepcopy(hf)              # the bridge wraps hf's modules in place; keep an untouched twin
    bridge = TransformerBridge.boot_transformers("gpt2", hf_model=hf, tokenizer=tokenizer)
    return reference, bridge.eval()


def _hf_weights(hf) -> dict[str, torch.Tensor]:
    """TL-layout weights straight from the HF GPT-2 (Conv1D: ``x @ weight``, ``c_attn`` = ``[Q | K | V]``)."""
    H, dh, d = N_HEADS, D_HEAD, D_MODEL
    out = {k: [] for k in ("W_Q", "W_K", "W_V", "W_O")}
    for block in hf.transformer.h:
        qkv = block.attn.c_attn.weight.detach()                       # [d, 3d]
        for i, k in enumerate(("W_Q", "W_K", "W_V")):
            out[k].append(qkv[:, i * d:(i + 1) * d].reshape(d, H, dh).permute(1, 0, 2))
        out["W_O"].append(block.attn.c_proj.weight.detach().reshape(H, dh, d))
    out = {k: torch.stack(v) for k, v in out.items()}
    out.update(W_E=hf.transformer.wte.weight.detach(), W_pos=hf.transformer.wpe.weight.detach(),
               W_U=hf.lm_head.weight.detach().T)
    return out


def test_gpt2_bridge_weights_and_circuits_equal_hand_built_ones(gpt2):
    hf, bridge = gpt2
    spec = describe(bridge)
    assert (spec.normalization, spec.positional, spec.d_mlp) == ("LN", "standard", 64)
    expected = _hf_weights(hf)
    w = weights(bridge)
    for name, value in expected.items():
        torch.testing.assert_close(w[name], value, atol=0, rtol=0)
    W_OV = expected["W_V"] @ expected["W_O"]                                   # [L, H, d, d]
    W_QK = expected["W_Q"] @ expected["W_K"].mT
    dense = {"q": W_QK, "k": W_QK.mT, "v": W_OV}
    for kind in "qkv":
        by_hand = torch.zeros(N_LAYERS, N_HEADS, N_LAYERS, N_HEADS)
        for h1 in range(N_HEADS):
            for h2 in range(N_HEADS):
                A, B = W_OV[0, h1], dense[kind][1, h2]
                by_hand[0, h1, 1, h2] = (A @ B).norm() / (A.norm() * B.norm())
        mine = composition_scores(bridge, kind)
        torch.testing.assert_close(mine, by_hand, atol=1e-5, rtol=0)
        torch.testing.assert_close(mine, bridge.all_composition_scores(kind.upper()).scores.detach(),
                                   atol=1e-5, rtol=0)
    full_ov = expected["W_E"] @ W_OV @ expected["W_U"]                      # [L, H, vocab, vocab]
    torch.testing.assert_close(ov_circuit(bridge).AB, full_ov, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(qk_circuit(bridge, 1, 3).AB, expected["W_E"] @ W_QK[1, 3] @ expected["W_E"].T,
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(direct_path(bridge).AB, expected["W_E"] @ expected["W_U"], atol=1e-5, rtol=0)
    lam = torch.linalg.eigvals(full_ov.double())                           # d_vocab eigenvalues, the rest ~0
    torch.testing.assert_close(copying_scores(bridge).double(), lam.sum(-1).real / lam.abs().sum(-1),
                               atol=1e-4, rtol=0)
    assert ov_eigenvalues(bridge).shape == (N_LAYERS, N_HEADS, D_HEAD)


def test_gpt2_bridge_head_detectors_read_hf_attention(gpt2):
    hf, bridge = gpt2
    tokens = _tokens(batch=4, seq_len=7, seed=7)
    with torch.no_grad():
        hf_patterns = torch.stack(hf(tokens, output_attentions=True).attentions)   # [L, batch, H, q, k]
    torch.testing.assert_close(attention_patterns(bridge, tokens), hf_patterns, atol=1e-5, rtol=0)
    s, q = 7, torch.arange(8, 15)
    scores = head_scores(bridge, tokens)
    torch.testing.assert_close(scores["induction"], hf_patterns[..., q, q - s + 1].mean(dim=(1, 3)), atol=1e-6, rtol=0)
    torch.testing.assert_close(scores["duplicate_token"], hf_patterns[..., q, q - s].mean(dim=(1, 3)), atol=1e-6, rtol=0)
    q = torch.arange(1, 15)
    torch.testing.assert_close(scores["previous_token"], hf_patterns[..., q, q - 1].mean(dim=(1, 3)), atol=1e-6, rtol=0)


def test_gpt2_bridge_head_ablation_equals_zeroing_that_head_in_hf(gpt2):
    hf, bridge = gpt2
    tokens = _tokens(batch=2, seq_len=6, seed=8)
    layer, head = 1, 2
    cols = slice(head * D_HEAD, (head + 1) * D_HEAD)

    def zero_head(_module, args):
        z = args[0].clone()
        z[..., cols] = 0
        return (z,)

    handle = hf.transformer.h[layer].attn.c_proj.register_forward_pre_hook(zero_head)
    try:
        with torch.no_grad():
            expected = hf(tokens).logits
    finally:
        handle.remove()
    with torch.no_grad(), ablate_head(bridge, layer, head):
        ablated = bridge(tokens)
        assert not torch.allclose(ablated, hf(tokens).logits, atol=1e-4)   # the ablation did something
    torch.testing.assert_close(ablated, expected, atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(bridge(tokens), hf(tokens).logits, atol=1e-5, rtol=0)   # removed on exit


def test_gpt2_bridge_bad_input_fails_clearly(gpt2):
    _, bridge = gpt2
    with pytest.raises(MechscopeError, match="Fold it first|attention-only"):
        path_expansion(bridge, _tokens())
    from mechscope.transformer.models import run_with_cache
    with pytest.raises(MechscopeError, match="unknown hook 'blocks.0.attn.hook_patern'.*hook_pattern"):
        run_with_cache(bridge, _tokens(), ["blocks.0.attn.hook_patern"])
    with pytest.raises(MechscopeError, match="no head 2.0"):
        ablation_effect(bridge, 2, 0, _tokens())


def test_sae_on_a_gpt2_bridge_hook_point_reads_hfs_mlp_activations(gpt2):
    from mechscope.dictionary.sae import SAEConfig, capture_activations, train_sae
    from mechscope.transformer.models import run_with_cache

    hf, bridge = gpt2
    batches = [_tokens(batch=4, seq_len=7, seed=s) for s in (9, 10)]
    rows = capture_activations(bridge, "blocks.0.mlp.hook_post", batches)      # TL's hook name, via its alias
    seen = []
    handle = hf.transformer.h[0].mlp.act.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    try:
        with torch.no_grad():
            for tokens in batches:
                hf(tokens)
    finally:
        handle.remove()
    assert rows.shape == (2 * 4 * 15, 64)
    torch.testing.assert_close(rows, torch.cat(seen).reshape(-1, 64), atol=1e-5, rtol=0)
    cached = run_with_cache(bridge, batches[0], ["blocks.0.mlp.hook_post"])[1]["blocks.0.mlp.hook_post"]
    torch.testing.assert_close(rows[:60], cached.reshape(-1, 64), atol=0, rtol=0)
    trained = train_sae(rows, SAEConfig(d_in=64, n_latents=128, kind="topk", k=8, steps=200, batch_size=64, lr=3e-3,
                                        resample_every=0), progress=False, log_every=20)
    assert trained.log[-1]["mse"] < 0.25 * trained.log[0]["mse"]
