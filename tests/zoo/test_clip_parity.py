"""Parity of ``mechscope.zoo.clip`` with open_clip, on random weights (no download).

These tests need open_clip (and torchvision), which live only in ``.venv-clip`` (``make test-clip``).  In the main
venv they skip; ``make test-clip`` sets ``MECHSCOPE_REQUIRE_OPENCLIP=1`` so that a missing or broken open_clip
fails them instead.
"""

import os
import time
import urllib.error
import urllib.request

import pytest
import torch

import mechscope
from mechscope.errors import MechscopeError, WeightsError
from mechscope.zoo import clip

if os.environ.get("MECHSCOPE_REQUIRE_OPENCLIP") == "1":
    import open_clip
else:
    open_clip = pytest.importorskip("open_clip")

pytestmark = pytest.mark.usefixtures("one_thread")
ATOL = 1e-5
TEXTS = ["a photo of a dog", "the word spiral", "an apple with the word iPod written on it"]


def _reference(name: str, seed: int = 0) -> torch.nn.Module:
    """open_clip's own model with seeded random weights, every batch norm given random statistics (open_clip zeroes
    each block's last BN scale, which would hide the residual branches from the comparison)."""
    torch.manual_seed(seed)
    ref = open_clip.create_model(clip.spec(name).open_clip_name, pretrained=None).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return ref


def _images(name: str, n: int = 2) -> torch.Tensor:
    size = clip.spec(name).image_size
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def rn50(tmp_path_factory):
    """(open_clip's RN50, ours loaded from open_clip's state dict saved as a file: the real key layout)."""
    ref = _reference("clip-rn50")
    path = tmp_path_factory.mktemp("w") / "rn50.pt"
    torch.save(ref.state_dict(), path)
    ours = clip.load_clip("clip-rn50", weights=path, device="cpu")
    return ref, ours


def _normalised(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def _check_parity(ref: torch.nn.Module, ours: clip.ClipResNet, name: str, n_images: int = 2) -> None:
    x = _images(name, n_images)
    expected = ref.encode_image(_normalised(x))
    assert expected.abs().max() > 1e-3   # not a degenerate (all-zero) embedding
    torch.testing.assert_close(ours.encode_image(x), expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=0)
    tokens = open_clip.get_tokenizer(clip.spec(name).open_clip_name)(TEXTS)
    assert torch.equal(ours.tokenize(TEXTS), tokens)
    torch.testing.assert_close(ours.encode_text(TEXTS), ref.encode_text(tokens), atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.encode_text(tokens, normalize=True), ref.encode_text(tokens, normalize=True),
                               atol=ATOL, rtol=0)
    assert ours.logit_scale.item() == pytest.approx(ref.logit_scale.exp().item())
    img, txt = ref.encode_image(_normalised(x), normalize=True), ref.encode_text(tokens, normalize=True)
    torch.testing.assert_close(ours.logits(x, TEXTS), ref.logit_scale.exp() * img @ txt.T, atol=1e-4, rtol=0)


def test_rn50_embeddings_equal_open_clips(rn50):
    ref, ours = rn50
    _check_parity(ref, ours, "clip-rn50")


@torch.no_grad()
def test_paper_layers_capture_the_tensors_open_clip_computes(rn50):
    ref, ours = rn50
    x = _images("clip-rn50", 1)
    seen = {}
    block = ref.visual.layer4[2]
    hooks = [block.register_forward_hook(lambda m, i, o: seen.__setitem__("post", o.clone())),
             # act3 is in place: copy its input before it runs
             block.act3.register_forward_pre_hook(lambda m, i: seen.__setitem__("pre", i[0].clone())),
             ref.visual.layer2[1].act1.register_forward_hook(lambda m, i, o: seen.__setitem__("relu1", o.clone()))]
    ref.encode_image(_normalised(x))
    for h in hooks:
        h.remove()
    names = [clip.paper_layer("image_block_4/2/Add_6/Relu"), "image_block_4_2_Add_6_0", "image_block_4_2_Add_6_Relu",
             "layer4.2_pre_relu", "layer2.1.relu1"]
    acts = mechscope.capture(ours, x, names)
    assert names[0] == "layer4.2"
    torch.testing.assert_close(acts["layer4.2"], seen["post"], atol=ATOL, rtol=0)
    torch.testing.assert_close(acts["image_block_4_2_Add_6_Relu"], seen["post"], atol=ATOL, rtol=0)
    torch.testing.assert_close(acts["image_block_4_2_Add_6_0"], seen["pre"], atol=ATOL, rtol=0)
    torch.testing.assert_close(acts["layer4.2_pre_relu"], seen["pre"], atol=ATOL, rtol=0)
    assert (seen["pre"] < 0).any() and torch.equal(acts["layer4.2"], seen["pre"].clamp(min=0))
    torch.testing.assert_close(acts["layer2.1.relu1"], seen["relu1"], atol=ATOL, rtol=0)
    # every declared layer runs and has the declared width
    shapes = mechscope.capture(ours, x, list(ours.layer_table), early_exit=False)
    for layer, info in ours.layer_table.items():
        assert shapes[layer].shape[1] == info.channels, layer


def test_units_validate_against_the_layer_table(rn50):
    _, ours = rn50
    from mechscope.units import validate

    validate(ours, "layer4.2:2047")
    with pytest.raises(MechscopeError, match="valid: 0..2047"):
        validate(ours, "image_block_4_2_Add_6_Relu:2048")


def test_state_dict_layouts_load(rn50, tmp_path):
    ref, ours = rn50
    # OpenAI's layout: open_clip's keys, the three non-parameter entries, float16 values
    openai_sd = {k: v.half() if v.is_floating_point() else v for k, v in ref.state_dict().items()}
    openai_sd.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77),
                     vocab_size=torch.tensor(49408))
    sd = clip.convert_state_dict(openai_sd, ours, "openai")
    assert set(sd) == set(ours.state_dict())
    # our own layout round-trips through safetensors
    from mechscope.zoo.weights import save_state_dict

    save_state_dict(ours.state_dict(), tmp_path / "ours.safetensors")
    again = clip.load_clip("clip-rn50", weights=tmp_path / "ours.safetensors", device="cpu")
    x = _images("clip-rn50", 1)
    with torch.no_grad():
        torch.testing.assert_close(again(x), ours(x), atol=0, rtol=0)
    broken = dict(ref.state_dict())
    broken.pop("visual.layer4.2.conv3.weight")
    with pytest.raises(WeightsError, match="missing keys: clip.visual.layer4.2.conv3.weight"):
        clip.convert_state_dict(broken, ours, "broken")


def test_rn50x4_architecture_parity():
    """The paper's model: RN50x4's architecture, random weights, through ``mechscope.load``'s random path."""
    t0 = time.perf_counter()
    ref = _reference("clip-rn50x4")
    ours = clip.build("clip-rn50x4").eval()
    ours.load_state_dict(clip.convert_state_dict(ref.state_dict(), ours, "rn50x4"))
    build_s = time.perf_counter() - t0
    _check_parity(ref, ours, "clip-rn50x4", n_images=1)
    acts = mechscope.capture(ours, _images("clip-rn50x4", 1), ["image_block_4_5_Add_6_Relu"])
    assert acts["image_block_4_5_Add_6_Relu"].shape == (1, 2560, 9, 9)   # the paper's 2560 units on a 9x9 grid
    print(f"RN50x4 random build + load: {build_s:.1f} s")


def test_feature_visualization_renders_a_paper_unit(rn50):
    """The image tower under a vision verb: a few steps of ``render`` on a unit named by the paper's layer name, at
    a size other than CLIP's own (the forward stops at the layer, before the fixed-size attention pool)."""
    from mechscope.vision.featvis.render import render

    _, ours = rn50
    result = render(ours, "image_block_4_2_Add_6_Relu:5", size=96, steps=3, progress=False, seed=0)
    image = result.images[3]
    assert image.shape == (1, 3, 96, 96) and 0 <= image.min() and image.max() <= 1


def test_random_weights_are_seeded():
    a = clip.load_clip("clip-rn50", weights="random", seed=1, device="cpu")
    b = clip.load_clip("clip-rn50", weights="random", seed=1, device="cpu")
    assert torch.equal(a.clip.visual.conv1.weight, b.clip.visual.conv1.weight)


def test_long_text_is_refused(rn50):
    _, ours = rn50
    with pytest.raises(MechscopeError, match="reads at most 75"):
        ours.tokenize("word " * 100)


def test_offline_download_fails_fast_and_clearly(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    t0 = time.perf_counter()
    with pytest.raises(WeightsError, match="could not download .*RN50x4.pt.*weights=PATH"):
        clip.load_clip("clip-rn50x4", weights="download")
    assert time.perf_counter() - t0 < 10
    from mechscope.zoo.weights import cache_dir

    assert not list(cache_dir().glob("*RN50x4*"))   # nothing half-written left in the cache


def test_openai_torchscript_files_are_read_when_their_hash_is_a_release(tmp_path, monkeypatch):
    m = torch.jit.script(torch.nn.Linear(2, 2))
    path = tmp_path / "RN50.pt"
    m.save(str(path))
    with pytest.raises(WeightsError, match="none of OpenAI's CLIP releases"):
        clip.read_weights(path)
    from mechscope.zoo.weights import sha256_file

    fake = dict(clip.MODELS)
    fake["clip-rn50"] = clip.ClipSpec(**{**clip.MODELS["clip-rn50"].__dict__, "sha256": sha256_file(path)})
    monkeypatch.setattr(clip, "MODELS", fake)
    assert set(clip.read_weights(path)) == {"weight", "bias"}


def test_mechscope_load_reaches_the_wrapper(rn50, tmp_path):
    """``mechscope.load`` through the registry's CLIP cards: random weights seeded, a file in open_clip's layout, and
    the card's download location and layer listing."""
    ref, ours = rn50
    a = mechscope.load("clip-rn50", weights="random", seed=2, device="cpu")
    b = mechscope.load("clip-rn50", weights="random", seed=2, device="cpu")
    assert isinstance(a, clip.ClipResNet) and torch.equal(a.clip.visual.conv1.weight, b.clip.visual.conv1.weight)
    path = tmp_path / "rn50.pt"
    torch.save(ref.state_dict(), path)
    loaded = mechscope.load("clip-rn50", weights=path, device="cpu")
    x = _images("clip-rn50", 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ours(x), atol=0, rtol=0)
    card = mechscope.get_card("clip-rn50x4")
    assert card.input_shape == (3, 288, 288) and card.download.sha256 == clip.spec("clip-rn50x4").sha256
    from mechscope.zoo.listing import layer_rows

    rows = {r["name"]: r for r in layer_rows("clip-rn50").rows}
    assert rows["image_block_4_2_Add_6_Relu"]["channels"] == 2048 and rows["layer4.2"]["spatial"] == [7, 7]
