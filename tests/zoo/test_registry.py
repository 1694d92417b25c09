import dataclasses

import pytest
import torch

import mechscope
from mechscope.errors import MechscopeError, UnknownNameError
from mechscope.zoo import registry
from mechscope.zoo.weights import sha256_file


def test_table_and_aliases():
    assert [c.name for c in mechscope.cards()][:5] == ["inceptionv1", "shapes", "shapes-seed1", "attn-only-1l",
                                                       "attn-only-2l"]   # new organisms are appended
    assert mechscope.get_card("attn-only-2l").input_kind == "tokens"
    assert mechscope.get_card("shapes-organism").input_shape == (3, 64, 64)
    assert mechscope.get_card("googlenet") is mechscope.get_card("inceptionv1")
    assert mechscope.get_card("inception5h").input_shape == (3, 224, 224)


def test_unknown_model_suggests_names():
    with pytest.raises(UnknownNameError, match="Closest valid names: inceptionv1"):
        mechscope.load("inceptionv2")


def test_inceptionv1_has_no_bundled_weights_and_says_what_to_do():
    with pytest.raises(MechscopeError, match="weights='download'.*weights='random'"):
        mechscope.load("inceptionv1")


def test_download_path_uses_the_cards_location(tmp_path, monkeypatch, inception):
    path = tmp_path / "inception5h.pth"
    torch.save({k: v for k, v in inception.state_dict().items()}, path)
    card = mechscope.get_card("inceptionv1")
    fake = registry.Download(url=path.as_uri(), filename="inception5h.pth", sha256=sha256_file(path))
    monkeypatch.setattr(registry, "_CARDS", (dataclasses.replace(card, download=fake),))
    model = mechscope.load("inceptionv1", weights="download", progress=False, device="cpu")
    assert torch.equal(model.conv2d0.conv.weight, inception.conv2d0.conv.weight)


def test_device_and_dtype():
    model = mechscope.load("inceptionv1", weights="random", seed=0, device="cpu", dtype=torch.float64)
    assert model.conv2d0.conv.weight.dtype == torch.float64
    assert model.conv2d0.conv.weight.device.type == "cpu"
