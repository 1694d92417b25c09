"""Head detectors, head ablation and path expansion on TransformerLens 3.9's ``HookedTransformer`` (the test
extra): loaded with our model's weights it must give what ours gives.  (They reach TL models through
``mechscope.transformer.models``: TL's ``run_with_cache`` takes ``names_filter=``, and its config says
``normalization_type`` / ``positional_embedding_type``.)"""

import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.transformer.heads import ablation_effect, head_scores, repeated_tokens
from mechscope.transformer.models import describe, run_with_cache
from mechscope.transformer.paths import path_expansion
from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer, to_transformer_lens, transformer_lens_config

pytestmark = pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated")


@pytest.fixture(scope="module")
def pair():
    import transformer_lens as tl   # a test extra: missing, this fails rather than skips

    torch.set_num_threads(1)
    ours = AttnOnlyTransformer(AttnOnlyConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=16, d_vocab=50,
                                              normalization="LNPre", positional="standard", init_range=0.3),
                               seed=4).eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        for name, p in ours.named_parameters():
            if name.split(".")[-1].startswith("b_"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    theirs = tl.HookedTransformer(tl.HookedTransformerConfig(**transformer_lens_config(ours.cfg)))
    theirs.load_state_dict(to_transformer_lens(ours), strict=True)
    return ours, theirs.eval()


def test_describe_reads_both_configs(pair):
    ours, theirs = pair
    assert describe(ours) == describe(theirs)
    assert describe(theirs).normalization == "LNPre" and describe(theirs).d_mlp is None


def test_head_scores_and_ablation_on_hooked_transformer_equal_ours(pair):
    ours, theirs = pair
    tokens = repeated_tokens(50, 7, 4, bos=0, seed=2, low=1)
    for kind, value in head_scores(ours, tokens).items():
        torch.testing.assert_close(head_scores(theirs, tokens)[kind], value, atol=1e-5, rtol=0)
    for kind in ("zero", "mean"):
        mine, tl = ablation_effect(ours, 1, 1, tokens, kind=kind), ablation_effect(theirs, 1, 1, tokens, kind=kind)
        assert mine["loss_after"] != pytest.approx(mine["loss_before"], abs=1e-6)
        for key, value in mine.items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(tl[key], value, atol=1e-5, rtol=0)
            elif isinstance(value, float):
                assert tl[key] == pytest.approx(value, abs=1e-5), key


def test_path_expansion_on_hooked_transformer_equals_ours(pair):
    ours, theirs = pair
    tokens = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    mine, tl = path_expansion(ours, tokens), path_expansion(theirs, tokens)
    assert tl.max_error() < 1e-4
    for name in ("direct", "heads", "virtual", "biases"):
        torch.testing.assert_close(getattr(tl, name), getattr(mine, name), atol=1e-4, rtol=0)


def test_unknown_hook_name_on_hooked_transformer_fails_clearly(pair):
    _, theirs = pair
    with pytest.raises(MechscopeError, match="unknown hook 'blocks.1.attn.hook_patern'.*blocks.1.attn.hook_pattern"):
        run_with_cache(theirs, torch.zeros(1, 3, dtype=torch.long), ["blocks.1.attn.hook_patern"])
