import pytest
import torch
from torch import nn

import mechscope
from mechscope.capture import capture, layer_shapes
from mechscope.errors import MechscopeError, UnknownNameError


class Counting(nn.Module):
    """Identity that counts its calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


class Exploding(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


def _toy():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3), Counting())


def test_capture_by_module_path_and_early_exit_skips_the_rest():
    model = _toy()
    x = torch.randn(2, 3, 8, 8)
    acts = capture(model, x, ["0", "1"])
    assert model[3].calls == 0, "early exit must not run layers after the last requested one"
    assert torch.equal(acts["1"], torch.relu(model[0](x)))
    capture(model, x, ["1"], early_exit=False)
    assert model[3].calls == 1


def test_early_exit_and_full_pass_give_identical_tensors(inception):
    x = torch.rand(1, 3, 96, 96)
    names = ["conv2d2", "mixed3a_pre_relu", "mixed3b:379", "mixed3a_5x5_bottleneck_pre_relu"]
    with torch.no_grad():
        early = capture(inception, x, names)
        full = capture(inception, x, names, early_exit=False)
    for n in names:
        assert torch.equal(early[n], full[n]), n


def test_unit_names_capture_their_layer_and_repeats_are_merged(inception):
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        acts = capture(inception, x, ["mixed3b:379", "mixed3b", "mixed3b:379"])
    assert list(acts) == ["mixed3b:379", "mixed3b"]
    assert acts["mixed3b:379"] is acts["mixed3b"]


def test_pre_relu_concat_is_relu_consistent(inception):
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        acts = capture(inception, x, ["mixed4a_pre_relu", "mixed4a", "mixed4a_1x1_pre_relu"])
    assert torch.allclose(torch.relu(acts["mixed4a_pre_relu"]), acts["mixed4a"])
    assert torch.equal(acts["mixed4a_pre_relu"][:, :192], acts["mixed4a_1x1_pre_relu"])


def test_gradients_flow_to_the_input(inception):
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    acts = capture(inception, x, "mixed3a:10")
    acts["mixed3a:10"][:, 10].mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_hooks_removed_after_an_exception():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), Exploding(), nn.ReLU())
    with pytest.raises(RuntimeError, match="boom"):
        capture(model, torch.randn(1, 3, 8, 8), ["2"])
    assert all(not m._forward_hooks for m in model.modules())


def test_hooks_removed_after_success_and_early_exit(inception):
    capture(inception, torch.rand(1, 3, 64, 64), ["conv2d1", "mixed3b"])
    assert all(not m._forward_hooks for m in inception.modules())


def test_errors_unknown_layer_not_run_and_empty():
    model = _toy()
    with pytest.raises(UnknownNameError, match="Valid names: 0, 1, 2, 3"):
        capture(model, torch.randn(1, 3, 8, 8), ["conv9"])
    wrapper = nn.Module()
    wrapper.net, wrapper.unused = model, nn.ReLU()
    wrapper.forward = wrapper.net.forward
    with pytest.raises(MechscopeError, match="did not run"):
        capture(wrapper, torch.randn(1, 3, 8, 8), ["unused"])
    with pytest.raises(MechscopeError, match="at least one"):
        capture(model, torch.randn(1, 3, 8, 8), [])


def test_shared_module_is_read_at_its_first_call():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)
    x = torch.randn(3, 2)
    acts = capture(model, x, ["1"], early_exit=False)
    assert torch.equal(acts["1"], torch.relu(model[0](x)))


def test_layer_shapes_on_meta_device_do_not_touch_the_model(inception):
    before = inception.conv2d0.conv.weight.clone()
    shapes = layer_shapes(inception, (3, 224, 224), ["conv2d0", "mixed5b", "softmax2_pre_activation"])
    assert shapes == {"conv2d0": (64, 112, 112), "mixed5b": (1024, 7, 7), "softmax2_pre_activation": (1008,)}
    assert inception.conv2d0.conv.weight.device.type == "cpu"
    assert torch.equal(before, inception.conv2d0.conv.weight)


def test_public_namespace():
    assert mechscope.capture is capture
    assert callable(mechscope.load) and issubclass(mechscope.WeightsError, mechscope.MechscopeError)
