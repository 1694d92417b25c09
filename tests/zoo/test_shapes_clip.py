import json
from dataclasses import replace

import pytest
import torch

import mechscope
from mechscope.data.multimodal import sample
from mechscope.errors import MechscopeError
from mechscope.training import TrainConfig, train
from mechscope.zoo.organisms.shapes_clip_net import EOS_ID, ShapesClipNet, tokenize
from mechscope.zoo.organisms.shapes_clip_recipe import (CARD_FILE, TOKENIZER_FILE, WEIGHTS_FILE, Contrastive,
                                                       ShapesClipRecipe, caption_corpus, clip_loss, fresh_zeroshot,
                                                       load_shapes_clip, train_caption_tokenizer, train_shapes_clip,
                                                       _same_caption)
from mechscope.zoo.registry import bundle_dir
from mechscope.zoo.weights import read_state_dict, sha256_file


@pytest.fixture(scope="module")
def tokenizer():
    return train_caption_tokenizer()


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return ShapesClipNet(seed=0).eval()


def test_shapes_of_both_towers_and_the_logits(net, tokenizer):
    images = torch.rand(3, 3, 64, 64)
    texts = ["a red star", "the word spiral", "a photo of a yellow polygon labelled polygon", "a drawing of an arc"]
    assert net.encode_image(images).shape == (3, 64) and net(images).shape == (3, 64)
    tokens = net.tokenize(texts, tokenizer)
    assert tokens.shape[0] == 4 and (tokens == EOS_ID).sum(1).tolist() == [1, 1, 1, 1]
    assert torch.allclose(net.encode_text(texts, tokenizer=tokenizer), net.encode_text(tokens), atol=1e-6)
    assert net.logits(images, tokens).shape == (3, 4)
    # padding after EOS does not change a text's embedding (causal tower, read at EOS)
    alone = net.encode_text(["a red star"], tokenizer=tokenizer)
    assert torch.allclose(alone[0], net.encode_text(tokens)[0], atol=1e-5)
    # every caption the world makes fits the context
    assert max(len(tokenizer.encode(c)) for c in caption_corpus()) < net.config.n_ctx


def test_image_layers_are_addressable_by_name(net):
    acts = mechscope.capture(net, torch.rand(2, 3, 64, 64), ["mixed4b", "mixed3b:5", "mixed4b_pre_relu", "image_embed"])
    assert acts["mixed4b"].shape == (2, 128, 8, 8) and acts["mixed3b:5"].shape == (2, 112, 16, 16)
    assert acts["image_embed"].shape == (2, 64)


def test_too_long_text_and_bad_input_errors(net, tokenizer):
    with pytest.raises(MechscopeError, match="context is 24 positions"):
        net.encode_text(["a red star " * 12], tokenizer=tokenizer)
    with pytest.raises(MechscopeError, match="24"):
        net.encode_text(torch.full((1, 30), 5).index_fill_(1, torch.tensor([29]), EOS_ID))
    with pytest.raises(MechscopeError, match="EOS"):
        net.encode_text(torch.full((1, 5), 5))
    with pytest.raises(MechscopeError, match="no tokenizer"):
        ShapesClipNet().encode_text(["a star"])
    with pytest.raises(MechscopeError, match=r"\[N, 3, H, W\]"):
        net.encode_image(torch.rand(2, 64, 64))


def test_clip_loss_spreads_targets_over_identical_captions():
    same = _same_caption(["a star", "a ring", "a star"])
    assert same.tolist() == [[True, False, True], [False, True, False], [True, False, True]]
    logits = torch.tensor([[5.0, 0.0, 5.0], [0.0, 5.0, 0.0], [5.0, 0.0, 5.0]])
    loss, metrics = clip_loss(logits, same)
    assert metrics["acc_i2t"] == 1.0 and float(loss) < 0.72   # ln 2 (two equal positives) + a little
    worse, _ = clip_loss(logits.roll(1, 1), same)
    assert float(worse) > float(loss) + 3


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)     # small ops: more threads only add overhead on a shared CPU
    yield
    torch.set_num_threads(before)


def test_loss_decreases_on_a_tiny_run(tokenizer, one_thread):
    torch.manual_seed(0)
    clip = ShapesClipNet(batchnorm=True, seed=0)
    items = sample(range(16), seed=5)
    fixed = ((items.images, tokenize(tokenizer, items.captions, clip.config.n_ctx)), _same_caption(items.captions))
    log = train(Contrastive(clip), lambda step: fixed, clip_loss,
                TrainConfig(steps=30, lr=3e-3, warmup=5, log_every=10, checkpoint_every=1000), progress=False)
    assert log[-1]["loss"] < 0.6 * log[0]["loss"], log


def test_resume_equals_uninterrupted(tmp_path, one_thread):
    recipe = ShapesClipRecipe(steps=4, batch_size=8, eval_items=4, warmup=2, checkpoint_every=1)
    whole = train_shapes_clip(tmp_path / "whole", recipe, progress=False)

    class Stop(Exception):
        pass

    def stop_at_2(step, model):
        if step == 2:
            raise Stop

    with pytest.raises(Stop):
        train_shapes_clip(tmp_path / "parts", recipe, progress=False, on_step=stop_at_2)
    resumed = train_shapes_clip(tmp_path / "parts", recipe, progress=False)
    a, b = (read_state_dict(tmp_path / d / WEIGHTS_FILE) for d in ("whole", "parts"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole["sha256"] == resumed["sha256"] and whole["zeroshot_accuracy"] == resumed["zeroshot_accuracy"]
    card = json.loads((tmp_path / "whole" / CARD_FILE).read_text())
    assert card["tokenizer"]["file"] == TOKENIZER_FILE and card["peak_memory_mb"] > 0
    model = load_shapes_clip(tmp_path / "whole")
    assert model.tokenizer is not None and model.encode_text(["a star"]).shape == (1, 64)


@pytest.mark.slow
def test_bundled_card_accuracies_are_reproduced_on_fresh_seeds():
    if not (bundle_dir() / WEIGHTS_FILE).exists():
        pytest.skip("shapes-clip weights are not bundled yet")
    model = load_shapes_clip(bundle_dir())
    card = json.loads((bundle_dir() / CARD_FILE).read_text())
    fresh = fresh_zeroshot(model, model.tokenizer, card, n=300)
    for style, recorded in card["zeroshot_accuracy"].items():
        # 300 fresh items per style: binomial standard error <= 0.029; allow ~2.5 of them
        assert abs(fresh[style] - recorded) < 0.07, (style, fresh[style], recorded)


def test_the_recipe_makes_the_bundled_tokenizer(tmp_path):
    if not (bundle_dir() / TOKENIZER_FILE).exists():
        pytest.skip("shapes-clip is not bundled yet")
    train_caption_tokenizer().save(tmp_path / "tok.json")
    card = json.loads((bundle_dir() / CARD_FILE).read_text())
    assert sha256_file(tmp_path / "tok.json") == card["tokenizer_sha256"] == sha256_file(bundle_dir() / TOKENIZER_FILE)


def test_recipe_is_recorded_and_replayable():
    from mechscope.zoo.organisms.shapes_clip_recipe import recipe_from_card
    from dataclasses import asdict

    r = replace(ShapesClipRecipe(), steps=7)
    card = {"recipe": json.loads(json.dumps({**asdict(r), "model": r.model.as_dict(), "world": r.world.as_dict()}))}
    assert recipe_from_card(card) == r


def test_the_zoo_loads_shapes_clip_with_its_tokenizer():
    net = mechscope.load("shapes-clip", device="cpu")
    assert net.tokenizer is not None
    with torch.no_grad():
        text = net.encode_text(["a picture of a star", "the word ring"])
    assert text.shape == (2, 64)
    assert mechscope.load("shapes-clip", weights="random", seed=0, device="cpu").tokenizer is None
