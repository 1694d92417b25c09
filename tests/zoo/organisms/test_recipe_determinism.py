"""Each recipe, run twice for a few steps with the same seed (in two fresh folders, so nothing is resumed), gives
bit-identical weights: the state dicts are compared exactly, tensor by tensor, and the files' sha256 agree.  The
runs are tiny (2-3 steps, batches of a few items) but go through everything the full recipe does: the world or
corpus, the tokenizer, the initialisation, the batches, the optimiser, batch-norm folding and the saving."""

from dataclasses import replace

import pytest
import torch

from mechscope.zoo.weights import read_state_dict, sha256_file

pytestmark = pytest.mark.usefixtures("one_thread")   # the recipes set torch's threads; restored afterwards


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def _twice(tmp_path, run, weights_name: str) -> dict:
    """``run(folder) -> card`` in two folders; assert identical weights; return the first state dict."""
    cards, states = [], []
    for i in (1, 2):
        folder = tmp_path / f"run{i}"
        cards.append(run(folder))
        states.append(read_state_dict(folder / weights_name))
        assert cards[-1]["sha256"] == sha256_file(folder / weights_name)
    _same(*states)
    assert cards[0]["sha256"] == cards[1]["sha256"]
    return states[0]


@pytest.mark.parametrize("architecture", ["inception", "vgg", "resnet"])
def test_shapes_recipe_is_bit_identical(tmp_path, architecture):
    from mechscope.zoo.organisms.shapes_recipe import ARCHITECTURES, ShapesRecipe, architecture_recipe, train_shapes

    base = ShapesRecipe() if architecture == "inception" else architecture_recipe(architecture)
    recipe = replace(base, steps=2, batch_size=4, eval_items=8)
    _twice(tmp_path, lambda out: train_shapes(out, recipe, progress=False), ARCHITECTURES[architecture].weights_file)


def test_shapes_recipe_with_another_seed_differs(tmp_path):
    from mechscope.zoo.organisms.shapes_recipe import ShapesRecipe, train_shapes

    recipe = ShapesRecipe(steps=1, batch_size=4, eval_items=8)
    a = train_shapes(tmp_path / "a", recipe, progress=False)["sha256"]
    b = train_shapes(tmp_path / "b", replace(recipe, seed=1), progress=False)["sha256"]
    assert a != b   # the comparison above can tell runs apart


@pytest.mark.parametrize("variant", ["gap", "gap-rotated", "avg-x", "max"])
def test_banding_recipe_is_bit_identical(tmp_path, variant):
    from mechscope.zoo.organisms.banding_net import file_stem
    from mechscope.zoo.organisms.banding_recipe import BandingRecipe, train_banding

    recipe = BandingRecipe(steps=2, batch_size=4, eval_items=8)
    _twice(tmp_path, lambda out: train_banding(out, variant, recipe, progress=False),
           f"{file_stem(variant)}.safetensors")


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_branched_recipe_is_bit_identical(tmp_path, groups):
    from mechscope.zoo.organisms.branched_recipe import BranchedRecipe, train_branched, weights_file

    recipe = BranchedRecipe(groups=groups, steps=2, batch_size=4, eval_items=8)
    _twice(tmp_path, lambda out: train_branched(out, recipe, progress=False), weights_file(groups))


def test_attn_only_recipe_is_bit_identical(tmp_path):
    from mechscope.transformer.heads import probe_scores
    from mechscope.zoo.organisms.attn_only_recipe import AttnOnlyRecipe, train_attn_only

    recipe = AttnOnlyRecipe(n_layers=2, steps=3, batch_size=2, d_vocab=300, corpus_bytes=100_000,
                            synthetic_steps=1, ramp_steps=1, probe_every=3, eval_rows=2)
    _twice(tmp_path, lambda out: train_attn_only(out, recipe, head_scores=probe_scores, progress=False),
           "attn-only-2l.safetensors")
    # the corpus and the tokenizer built on the way are the same too
    first, second = tmp_path / "run1", tmp_path / "run2"
    assert sha256_file(first / "attn-only-2l.tokenizer.json") == sha256_file(second / "attn-only-2l.tokenizer.json")
    assert (first / "data" / "train_tokens.npy").read_bytes() == (second / "data" / "train_tokens.npy").read_bytes()


def test_sae_recipe_is_bit_identical(tmp_path):
    from mechscope.reproduce.polysemantic_sae import NAME, SAERecipe, train_mixed3b_sae

    recipe = replace(SAERecipe(), images=4, n_latents=64, k=4, steps=3, batch_size=64, resample_every=2,
                     dead_after=1)
    _twice(tmp_path, lambda out: train_mixed3b_sae(out, recipe, progress=False), f"{NAME}.safetensors")
