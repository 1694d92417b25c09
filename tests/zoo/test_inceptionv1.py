"""InceptionV1: shapes, faithfulness to the TF graph, and the inception5h.pth converter."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mechscope
from mechscope.capture import capture
from mechscope.errors import WeightsError
from mechscope.zoo.inceptionv1 import InceptionV1, same_padding, to_lucent_state_dict
from mechscope.zoo.weights import save_state_dict

# The public inception5h.pth layout, written out from the published architecture (independent of our code):
# every conv is "<name>_pre_relu_conv" with torch Conv2d shapes [out, in, k, k]; the classifier is a Linear.
STEM = [("conv2d0", 3, 64, 7), ("conv2d1", 64, 64, 1), ("conv2d2", 64, 192, 3)]
MIXED = {  # in, 1x1, 3x3_bottleneck, 3x3, 5x5_bottleneck, 5x5, pool_reduce
    "mixed3a": (192, 64, 96, 128, 16, 32, 32),
    "mixed3b": (256, 128, 128, 192, 32, 96, 64),
    "mixed4a": (480, 192, 96, 204, 16, 48, 64),
    "mixed4b": (508, 160, 112, 224, 24, 64, 64),
    "mixed4c": (512, 128, 128, 256, 24, 64, 64),
    "mixed4d": (512, 112, 144, 288, 32, 64, 64),
    "mixed4e": (528, 256, 160, 320, 32, 128, 128),
    "mixed5a": (832, 256, 160, 320, 48, 128, 128),
    "mixed5b": (832, 384, 192, 384, 48, 128, 128),
}
WIDTHS = {"conv2d0": 64, "conv2d1": 64, "conv2d2": 192, "mixed3a": 256, "mixed3b": 480, "mixed4a": 508,
          "mixed4b": 512, "mixed4c": 512, "mixed4d": 528, "mixed4e": 832, "mixed5a": 832, "mixed5b": 1024}


def lucent_layout(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    convs = list(STEM)
    for name, (c_in, c1, c3b, c3, c5b, c5, cp) in MIXED.items():
        convs += [(f"{name}_1x1", c_in, c1, 1), (f"{name}_3x3_bottleneck", c_in, c3b, 1), (f"{name}_3x3", c3b, c3, 3),
                  (f"{name}_5x5_bottleneck", c_in, c5b, 1), (f"{name}_5x5", c5b, c5, 5),
                  (f"{name}_pool_reduce", c_in, cp, 1)]
    sd = {}
    for name, c_in, c_out, k in convs:
        sd[f"{name}_pre_relu_conv.weight"] = torch.randn(c_out, c_in, k, k, generator=g) * 0.01
        sd[f"{name}_pre_relu_conv.bias"] = torch.randn(c_out, generator=g) * 0.01
    sd["softmax2_pre_activation_matmul.weight"] = torch.randn(1008, 1024, generator=g) * 0.01
    sd["softmax2_pre_activation_matmul.bias"] = torch.randn(1008, generator=g) * 0.01
    return sd


@pytest.fixture(scope="module")
def lucent_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "inception5h.pth"
    torch.save(lucent_layout(), path)
    return path


def test_declared_widths_match_the_published_ones(inception):
    for name, width in WIDTHS.items():
        assert inception.layer_table[name].channels == width
    assert inception.layer_table["softmax2_pre_activation"].channels == 1008
    assert all(f"{n}_pre_relu" in inception.layer_table for n in WIDTHS)


@pytest.mark.parametrize(
    "size, spatial",
    [
        (224, {"conv2d0": 112, "maxpool0": 56, "conv2d2": 56, "maxpool1": 28, "mixed3b": 28, "maxpool4": 14,
               "mixed4e": 14, "maxpool10": 7, "mixed5b": 7}),
        (150, {"conv2d0": 75, "maxpool0": 38, "conv2d2": 38, "maxpool1": 19, "mixed3b": 19, "maxpool4": 10,
               "mixed4e": 10, "maxpool10": 5, "mixed5b": 5}),
        (97, {"conv2d0": 49, "maxpool0": 25, "maxpool1": 13, "maxpool4": 7, "maxpool10": 4, "mixed5b": 4}),
    ],
)
def test_shapes_follow_tf_same_padding(inception, size, spatial):
    with torch.no_grad():
        acts = capture(inception, torch.rand(1, 3, size, size), list(spatial) + ["softmax2_pre_activation"],
                       early_exit=False)
    for name, s in spatial.items():
        assert acts[name].shape == (1, WIDTHS.get(name, acts[name].shape[1]), s, s), name
    assert acts["softmax2_pre_activation"].shape == (1, 1008)


def test_same_padding_matches_tensorflow_rule():
    # TF: out = ceil(in / stride); pad = max((out - 1) * stride + k - in, 0), the extra pixel after.
    assert same_padding(224, 7, 2) == (2, 3)  # the (2, 3, 2, 3) pad of conv2d0 in the public port
    assert same_padding(112, 3, 2) == (0, 1)  # maxpool0's (0, 1, 0, 1)
    assert same_padding(56, 3, 1) == (1, 1)
    assert same_padding(28, 5, 1) == (2, 2)
    assert same_padding(5, 1, 1) == (0, 0)


def test_lrn_is_tensorflows_formula(inception):
    # TF local_response_normalization: a / (bias + alpha * sum_{|d| <= radius} a_{c+d}^2) ** beta
    a = torch.randn(2, 64, 5, 5) * 30
    got = inception.localresponsenorm0(a)
    sq = np.pad(a.numpy() ** 2, ((0, 0), (5, 5), (0, 0), (0, 0)))
    window = sum(sq[:, d : d + 64] for d in range(11))
    expected = a.numpy() / (2.0 + 1e-4 * window) ** 0.5
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_first_layer_is_x255_minus_117_with_same_padding(lucent_file):
    sd = lucent_layout()
    model = mechscope.load("inceptionv1", weights=lucent_file, device="cpu")
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        got = capture(model, x, "conv2d0_pre_relu")["conv2d0_pre_relu"]
        expected = F.conv2d(F.pad(x * 255 - 117, (2, 3, 2, 3)), sd["conv2d0_pre_relu_conv.weight"],
                            sd["conv2d0_pre_relu_conv.bias"], stride=2)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)


def test_maxpool_pads_with_minus_infinity(inception):
    x = -torch.rand(1, 64, 112, 112) - 1  # all negative: zero padding would leak zeros into the border
    out = inception.maxpool0(x)
    expected = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, 2)
    assert torch.equal(out, expected) and out.max() < 0


def test_converter_places_every_tensor(lucent_file):
    sd = lucent_layout()
    model = mechscope.load("inceptionv1", weights=lucent_file, device="cpu")
    assert torch.equal(model.conv2d0.conv.weight, sd["conv2d0_pre_relu_conv.weight"])
    assert torch.equal(model.mixed4a.b3x3.conv.weight, sd["mixed4a_3x3_pre_relu_conv.weight"])
    assert torch.equal(model.mixed5b.b5x5_bottleneck.conv.bias, sd["mixed5b_5x5_bottleneck_pre_relu_conv.bias"])
    assert torch.equal(model.mixed3b.pool_reduce.conv.weight, sd["mixed3b_pool_reduce_pre_relu_conv.weight"])
    assert torch.equal(model.softmax2_pre_activation.weight, sd["softmax2_pre_activation_matmul.weight"])
    # and back: our layout -> the public one is the identity on this file
    back = to_lucent_state_dict(model.state_dict(), model)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)


def test_native_safetensors_round_trip(tmp_path, inception):
    path = tmp_path / "inceptionv1.safetensors"
    save_state_dict(inception.state_dict(), path)
    again = mechscope.load("inceptionv1", weights=path, device="cpu")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), inception(x))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("mixed4c_5x5_pre_relu_conv.weight"), "missing keys: mixed4c_5x5_pre_relu_conv.weight"),
        (lambda sd: sd.__setitem__("mixed9z_1x1_pre_relu_conv.weight", torch.zeros(1)),
         "unexpected keys: mixed9z_1x1_pre_relu_conv.weight"),
        (lambda sd: sd.__setitem__("mixed3a_3x3_pre_relu_conv.weight", torch.zeros(128, 96, 5, 5)),
         r"wrong shapes: mixed3a_3x3_pre_relu_conv.weight: \(128, 96, 5, 5\) != expected \(128, 96, 3, 3\)"),
    ],
)
def test_converter_refuses_bad_files_naming_the_keys(tmp_path, edit, message):
    sd = lucent_layout()
    edit(sd)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError, match=message):
        mechscope.load("inceptionv1", weights=path, device="cpu")


def test_random_weights_are_seeded():
    a, b = InceptionV1(), mechscope.load("inceptionv1", weights="random", seed=3, device="cpu")
    c = mechscope.load("inceptionv1", weights="random", seed=3, device="cpu")
    assert torch.equal(b.mixed3b.b3x3.conv.weight, c.mixed3b.b3x3.conv.weight)
    assert not torch.equal(a.mixed3b.b3x3.conv.weight, b.mixed3b.b3x3.conv.weight)
    assert not b.training


def test_relus_are_modules_for_redirection(inception):
    # feature visualization swaps nn.ReLU modules; no functional relu may hide in the graph
    n_relu = sum(isinstance(m, torch.nn.ReLU) for m in inception.modules())
    assert n_relu == 3 + 6 * len(MIXED)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_native_padding_equals_explicit_same_padding(kernel):
    from mechscope.zoo.inceptionv1 import SameConv2d, SameMaxPool2d, _pad_same

    conv = SameConv2d(4, 6, kernel)
    x = torch.randn(2, 4, 9, 11)
    expected = F.conv2d(_pad_same(x, kernel, 1, 0.0), conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), expected)
    if kernel > 1:
        negative = -torch.rand(2, 4, 9, 11) - 1
        pooled = SameMaxPool2d(kernel, 1)(negative)
        assert torch.equal(pooled, F.max_pool2d(_pad_same(negative, kernel, 1, float("-inf")), kernel, 1))


@pytest.mark.parametrize("channels", [64, 192, 7])
def test_lrn_equals_torchs_local_response_norm_and_its_gradient(channels):
    from mechscope.zoo.inceptionv1 import LocalResponseNorm

    ours, torchs = LocalResponseNorm(channels), torch.nn.LocalResponseNorm(11, 0.0011, 0.5, 2.0)
    x = (torch.randn(2, channels, 9, 7, dtype=torch.float64) * 20).requires_grad_(True)
    ours_out = ours.double()(x)
    torch.testing.assert_close(ours_out, torchs(x), rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ours_out)
    (ga,) = torch.autograd.grad(ours_out, x, g)
    (gb,) = torch.autograd.grad(torchs(x), x, g)
    torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)
    assert "band" not in ours.state_dict()
