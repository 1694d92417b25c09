"""``mechscope.zoo.clip`` without open_clip: names, layer tables, the error that names the extra, weight files.

Runs in every venv (the main one has no open_clip; the open_clip parity tests are ``test_clip_parity.py``)."""

import sys

import pytest
import torch

from mechscope.errors import MechscopeError, UnknownNameError, WeightsError
from mechscope.zoo import clip


@pytest.fixture
def no_open_clip(monkeypatch):
    """open_clip made unimportable, whether or not this venv has it."""
    monkeypatch.setitem(sys.modules, "open_clip", None)


def test_missing_open_clip_names_the_install_command(no_open_clip):
    for call in (lambda: clip.build("clip-rn50x4"),
                 lambda: clip.load_clip("clip-rn50x4", weights="random"),
                 lambda: clip.load_clip("clip-rn50", weights="download")):
        with pytest.raises(MechscopeError, match=r"pip install 'mechscope\[clip\]'"):
            call()


def test_missing_open_clip_is_reported_before_any_download(no_open_clip, monkeypatch):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(MechscopeError, match="open_clip"):
        clip.load_clip("clip-rn50x4", weights="download")


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(UnknownNameError, match="clip-rn50x4"):
        clip.spec("clip-rn50x5")
    assert list(clip.MODELS) == ["clip-rn50", "clip-rn101", "clip-rn50x4", "clip-rn50x16", "clip-rn50x64"]


@pytest.mark.parametrize("name, ours", [
    ("image_block_4/5/Add_6/Relu", "layer4.5"),
    ("image_block_4/5", "layer4.5"),
    ("image_block_4/5/Add_6", "layer4.5_pre_relu"),
    ("image_block_4/5/Add_6:0", "layer4.5_pre_relu"),
    ("image_block_4_5_Add_6_0", "layer4.5_pre_relu"),
    ("image_block_4_5_Add_6_Relu", "layer4.5"),
    ("image_block_3/9/Add_6/Relu", "layer3.9"),
])
def test_paper_layer_names(name, ours):
    assert clip.paper_layer(name) == ours


def test_bad_paper_layer_name_says_what_is_valid():
    with pytest.raises(MechscopeError, match="image_block_4/5/Add_6/Relu"):
        clip.paper_layer("image_block_5/0")


def test_layer_tables_follow_the_architectures():
    t = clip.clip_layer_table("clip-rn50x4")
    # RN50x4: width 80, blocks (4, 6, 10, 6): stage 4 has 6 blocks of 80 * 8 * 4 = 2560 channels
    assert [n for n in t if n.startswith("layer4.") and "_" not in n and "relu" not in n] == \
        [f"layer4.{b}" for b in range(6)]
    assert t["layer4.5"].channels == t["image_block_4_5_Add_6_0"].channels == 2560
    assert t["image_block_4_5_Add_6_0"].path == t["layer4.5_pre_relu"].path == "clip.visual.layer4.5.act3.pre_relu"
    assert t["layer4.5_pre_relu"].pre_relu and not t["layer4.5"].pre_relu
    assert t["layer1.0.relu1"].channels == 80 and t["stem"].channels == 80 and t["attnpool"].channels == 640
    assert "layer4.6" not in t and "layer3.9" in t
    t50 = clip.clip_layer_table("clip-rn50")
    assert t50["layer4.2"].channels == 2048 and "layer4.3" not in t50 and t50["attnpool"].channels == 1024
    assert clip.clip_layer_table("clip-rn50x64")["layer4.9"].channels == 128 * 8 * 4


def test_release_urls_carry_their_sha256():
    s = clip.spec("clip-rn50x4")
    assert s.url.endswith(f"/{s.sha256}/RN50x4.pt") and len(s.sha256) == 64


def test_unknown_torchscript_files_are_refused(tmp_path):
    path = tmp_path / "RN50x4.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(WeightsError, match="TorchScript archive whose sha256 .* none of OpenAI's CLIP releases"):
        clip.read_weights(path)


def test_plain_state_dicts_are_read(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save({"visual.conv1.weight": torch.zeros(2, 3, 3, 3)}, path)
    assert list(clip.read_weights(path)) == ["visual.conv1.weight"]
    with pytest.raises(WeightsError, match="does not exist"):
        clip.read_weights(tmp_path / "missing.pt")
