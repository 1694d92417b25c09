"""The shuffled-captions control of shapes-clip (``ShapesClipRecipe(shuffle_captions=True)``): a fixed
permutation of captions within each batch, a run that trains, and the bundled card reproduced on fresh seeds."""

import json
from collections import Counter

import pytest
import torch
from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.data.multimodal import sample
from mechscope.zoo.organisms import shapes_clip_recipe as recipe_module
from mechscope.zoo.organisms.shapes_clip_net import tokenize
from mechscope.zoo.organisms.shapes_clip_recipe import (SHUFFLED_CARD_FILE, SHUFFLED_TOKENIZER_FILE,
                                                       SHUFFLED_WEIGHTS_FILE, ShapesClipRecipe, fresh_zeroshot, files,
                                                       load_shapes_clip, shuffled_sources, train_shapes_clip)
from mechscope.zoo.registry import bundle_dir


def test_the_shuffle_is_a_fixed_permutation_within_each_batch():
    for step in (0, 1, 57, 1599):
        src = shuffled_sources(step, 128, seed=0)
        lo = step * 128
        assert sorted(src) == list(range(lo, lo + 128))               # a permutation of the batch's own items
        assert all(s != lo + k for k, s in enumerate(src))            # no item keeps its own caption
        assert src == shuffled_sources(step, 128, seed=0)             # same item -> same caption, every call
    assert shuffled_sources(3, 128, seed=0) != shuffled_sources(3, 128, seed=1)
    assert shuffled_sources(3, 128, seed=0) != [s + 128 for s in shuffled_sources(2, 128, seed=0)]


def test_training_batches_carry_the_worlds_captions_shuffled(tmp_path, monkeypatch):
    recipe = ShapesClipRecipe(batch_size=64, shuffle_captions=True)
    step, seen = 5, {}

    def fake(model, batch, loss, config, **kwargs):      # stands in for the training loop: builds one batch
        (seen["images"], seen["tokens"]), _ = batch(step)
        raise StopIteration

    own = sample(range(step * 64, (step + 1) * 64), recipe.seed, recipe.world)
    monkeypatch.setattr(recipe_module, "train", fake)
    with pytest.raises(StopIteration):
        train_shapes_clip(tmp_path, recipe, progress=False)
    tokenizer = recipe_module.train_caption_tokenizer(recipe.tokenizer_vocab)
    got = seen["tokens"]
    n_ctx = recipe.model.n_ctx
    own_tokens = tokenize(tokenizer, own.captions, n_ctx)             # padded as the batch is (same multiset)
    by_caption = {tuple(row.tolist()): c for row, c in zip(own_tokens, own.captions)}
    shuffled = [by_caption[tuple(row.tolist())] for row in got]
    assert torch.equal(seen["images"], own.images)                    # the images and their order are unchanged
    assert Counter(shuffled) == Counter(own.captions)                 # the caption multiset is the world's
    lo = step * recipe.batch_size
    assert shuffled == [own.captions[s - lo] for s in shuffled_sources(step, 64, recipe.seed)]
    differ = sum(a != b for a, b in zip(shuffled, own.captions)) / len(shuffled)
    assert differ > 0.9, differ                                       # (equal only where two items share a text)


def test_a_tiny_shuffled_run_trains_and_names_its_files(tmp_path):
    before = torch.get_num_threads()
    try:
        recipe = ShapesClipRecipe(steps=3, batch_size=8, eval_items=4, warmup=1, shuffle_captions=True)
        card = train_shapes_clip(tmp_path, recipe, progress=False)
    finally:
        torch.set_num_threads(before)
    assert files(recipe) == (SHUFFLED_WEIGHTS_FILE, SHUFFLED_CARD_FILE, SHUFFLED_TOKENIZER_FILE)
    assert card["name"] == "shapes-clip-shuffled" and card["recipe"]["shuffle_captions"] is True
    assert "shuffled captions" in card["control"] and len(card["log"]) >= 1
    model = load_shapes_clip(tmp_path, shuffled=True)
    assert model.encode_text(["a star"]).shape == (1, 64)
    assert not (tmp_path / "shapes_clip.safetensors").exists()


def test_the_cli_flag_selects_the_control(tmp_path, monkeypatch):
    seen = {}

    def fake(out, recipe):
        seen["recipe"] = recipe
        raise StopIteration

    monkeypatch.setattr(recipe_module, "train_shapes_clip", fake)
    CliRunner().invoke(app, ["train", "shapes-clip", "--shuffle-captions", "--out", str(tmp_path)])
    assert seen["recipe"] == ShapesClipRecipe(shuffle_captions=True)
    CliRunner().invoke(app, ["train", "shapes-clip", "--out", str(tmp_path)])
    assert seen["recipe"] == ShapesClipRecipe()


@pytest.mark.slow
def test_bundled_card_accuracies_are_reproduced_on_fresh_seeds():
    if not (bundle_dir() / SHUFFLED_WEIGHTS_FILE).exists():
        pytest.skip("shapes-clip-shuffled is not bundled yet")
    model = load_shapes_clip(bundle_dir(), shuffled=True)
    card = json.loads((bundle_dir() / SHUFFLED_CARD_FILE).read_text())
    # the shipped shapes-clip's recipe, only the captions shuffled
    assert card["recipe"] == {**json.loads((bundle_dir() / "shapes_clip.json").read_text())["recipe"],
                              "shuffle_captions": True}
    fresh = fresh_zeroshot(model, model.tokenizer, card, n=300)
    for style, recorded in card["zeroshot_accuracy"].items():
        # 300 fresh items per style: binomial standard error <= 0.029; allow ~2.5 of them
        assert abs(fresh[style] - recorded) < 0.07, (style, fresh[style], recorded)
