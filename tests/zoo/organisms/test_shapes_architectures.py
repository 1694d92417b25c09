"""The VGG-style and ResNet organisms of the shapes world: shapes, layer tables, batch-norm folding, the recipe."""

import pytest
import torch

from mechscope.capture import capture
from mechscope.errors import MechscopeError
from mechscope.zoo.organisms.shapes_net import ShapesNet, fold_batchnorm, split_logits
from mechscope.zoo.organisms.shapes_recipe import ARCHITECTURES, ShapesRecipe, architecture_recipe, train_shapes
from mechscope.zoo.organisms.shapes_resnet import ShapesResNet
from mechscope.zoo.organisms.shapes_vgg import ShapesVGG

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = {ShapesVGG: {"conv1_1": 64, "pool1": 32, "conv2_2": 32, "conv3_2": 16, "conv4_1": 8},
         ShapesResNet: {"stem": 32, "block1": 32, "block2": 16, "block3": 16, "block3_pre_relu": 16, "block4": 8}}


@pytest.mark.parametrize("cls", [ShapesVGG, ShapesResNet])
def test_outputs_and_every_layer_of_the_table_reads_with_its_width(cls):
    net = cls().eval()
    x = torch.rand(2, 3, 64, 64)
    assert {k: v.shape[1] for k, v in split_logits(net(x)).items()} == {"shape": 10, "curve": 40, "boundary": 9,
                                                                         "colour": 2}
    acts = capture(net, x, list(net.layer_table), early_exit=False)
    for name, info in net.layer_table.items():
        assert tuple(acts[name].shape[:2]) == (2, info.channels), name
        if name in SIZES[cls]:
            assert acts[name].shape[-1] == SIZES[cls][name], name


@pytest.mark.parametrize("cls", [ShapesVGG, ShapesResNet, ShapesNet])
def test_folding_batch_norm_keeps_the_function(cls):
    torch.manual_seed(0)
    net = cls(batchnorm=True)
    net.train()
    for _ in range(3):                                   # move the running statistics off their defaults
        net(torch.rand(4, 3, 64, 64))
    net.eval()
    x = torch.rand(2, 3, 64, 64)
    folded = fold_batchnorm(net)
    assert type(folded) is cls and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert torch.allclose(folded(x), net(x), atol=1e-4)


def test_recipe_trains_each_architecture_into_its_own_files(tmp_path):
    card = train_shapes(tmp_path, ShapesRecipe(architecture="resnet", steps=2, batch_size=4, eval_items=8,
                                               threads=1), progress=False)
    assert card["name"] == "shapes-resnet" and (tmp_path / "shapes_resnet.safetensors").exists()
    assert (tmp_path / "shapes_resnet.json").exists() and card["recipe"]["architecture"] == "resnet"
    assert architecture_recipe("vgg").architecture == "vgg" and set(ARCHITECTURES) == {"inception", "vgg", "resnet"}
    with pytest.raises(MechscopeError, match="unknown architecture"):
        architecture_recipe("mlp")


@pytest.mark.parametrize("name", ["shapes-vgg", "shapes-resnet"])
def test_bundled_organisms_match_their_cards(name):
    import mechscope
    from mechscope.data.shapes import ShapesDataset
    from mechscope.zoo.organisms.shapes_recipe import HELD_OUT_OFFSET, evaluate
    from mechscope.zoo.registry import bundled_card, get_card

    card = bundled_card(name)
    assert card["name"] == name and card["sha256"] == get_card(name).bundled_sha256
    assert card["recipe"]["architecture"] == name.split("-")[1] and card["train_seconds_total"] > 0
    acc = evaluate(mechscope.load(name, device="cpu"), ShapesDataset(n=200, seed=HELD_OUT_OFFSET + 2))
    assert acc["shape"] >= card["accuracy"]["shape"] - 0.1 and acc["boundary"] >= 0.9
