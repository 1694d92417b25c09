"""render: optimizes an image for an objective on a (tiny) model; thresholds, seeding, validation, saving."""

import io
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import mechscope
from mechscope.vision.featvis import objectives as obj
from mechscope.vision.featvis import param
from mechscope.vision.featvis.render import RenderResult, render


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1)))


@pytest.fixture
def model():
    return tiny_model()


def quick(model, objective="conv:1", **kwargs):
    kwargs.setdefault("steps", 8)
    kwargs.setdefault("size", 32)
    kwargs.setdefault("progress", False)
    return render(model, objective, **kwargs)


# --- optimization --------------------------------------------------------------------------------------------


def test_objective_increases(model):
    result = quick(model, steps=30, seed=0)
    assert len(result.trace) == 30
    assert result.trace[-1] > result.trace[0]
    # compare averages, not single noisy steps (the transforms are random)
    assert sum(result.trace[-5:]) / 5 > sum(result.trace[:5]) / 5


def test_objective_increases_with_objective_algebra(model):
    o = obj.channel("conv", 1) - 0.5 * obj.channel("conv", 2)
    result = quick(model, o, steps=30, seed=0, transforms=[])
    assert result.trace[-1] > result.trace[0]


def test_minimizing_via_negation(model):
    result = quick(model, -obj.channel("conv", 1), steps=30, seed=0, transforms=[])
    assert result.trace[-1] > result.trace[0]  # -channel goes up, so the channel goes down


def test_trace_value_matches_objective_of_the_image(model):
    """With no transforms, the first trace value is the objective of the initial image."""
    torch.manual_seed(123)
    params, image_fn = param.image(32)
    with torch.no_grad():
        expected = model.conv(image_fn())[:, 1].mean().item()
    torch.manual_seed(123)
    result = quick(model, steps=1, transforms=[], param=lambda: param.image(32))
    assert result.trace[0] == pytest.approx(expected, abs=1e-5)


# --- thresholds and results ----------------------------------------------------------------------------------


def test_thresholds_keep_images_at_exactly_those_steps(model):
    result = quick(model, steps=100, thresholds=[5, 2, 5], seed=0)
    assert sorted(result.images) == [2, 5]
    assert len(result.trace) == 5  # runs up to the last threshold
    for img in result.images.values():
        assert img.shape == (1, 3, 32, 32)
        assert img.min() >= 0 and img.max() <= 1
        assert not img.requires_grad
        assert img.device.type == "cpu"
    assert not torch.equal(result.images[2], result.images[5])
    assert result.final is result.images[5]


def test_default_threshold_is_last_step(model):
    result = quick(model, steps=3, seed=0)
    assert list(result.images) == [3]
    assert result.final.shape == (1, 3, 32, 32)


def test_custom_param_batch_and_size(model):
    result = quick(model, param=lambda: param.image(20, 16, batch=2), steps=2, seed=0)
    assert result.final.shape == (2, 3, 16, 20)


def test_custom_optimizer_gets_the_params(model):
    seen = []

    def make(params):
        seen.append(params)
        return torch.optim.SGD(params, lr=0.0)

    result = quick(model, optimizer=make, steps=3, seed=0, transforms=[])
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0].shape[-1] == 2  # the FFT spectrum
    # a zero learning rate never changes the image: every step sees the same objective
    assert result.trace == pytest.approx([result.trace[0]] * 3)


# --- seeding -------------------------------------------------------------------------------------------------


def test_same_seed_same_image_different_seed_different_image(model):
    a = quick(model, steps=4, seed=7)
    b = quick(model, steps=4, seed=7)
    c = quick(model, steps=4, seed=8)
    assert torch.equal(a.final, b.final)
    assert a.trace == b.trace
    assert not torch.equal(a.final, c.final)


def test_render_does_not_disturb_global_rng(model):
    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    quick(model, steps=2, seed=1)
    assert torch.equal(torch.rand(3), expected)


# --- the model is left alone ---------------------------------------------------------------------------------


def test_model_parameters_untouched(model):
    model.conv.bias.requires_grad_(False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    quick(model, steps=4, seed=0)
    assert model.conv.weight.requires_grad is True
    assert model.conv.bias.requires_grad is False
    for name, p in model.named_parameters():
        assert p.grad is None, name
        assert torch.equal(p.detach(), before[name]), name


def test_requires_grad_restored_after_error(model):
    def failing(acts):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        quick(model, obj.Objective(failing, ["conv"]), steps=1, transforms=[])
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


# --- validation ----------------------------------------------------------------------------------------------


def test_unknown_layer_lists_close_names(model):
    with pytest.raises(mechscope.UnknownNameError) as info:
        quick(model, "convv:1")
    message = str(info.value)
    assert "'convv'" in message
    assert "Closest valid names: conv" in message



def test_out_of_range_channel_mentions_width(model):
    with pytest.raises(mechscope.MechscopeError, match=r"4 channels"):
        quick(model, "conv:4")


def test_validation_happens_before_any_work(model):
    calls = []

    def param_fn():
        calls.append(1)
        return param.image(8)

    with pytest.raises(mechscope.MechscopeError):
        quick(model, "conv:9", param=param_fn)
    assert calls == []


@pytest.fixture(scope="module")
def inception_random():
    return mechscope.load("inceptionv1", weights="random", seed=0, device="cpu")


def test_inception_unknown_layer_and_layer_only(inception_random):
    with pytest.raises(mechscope.UnknownNameError, match=r"Closest valid names: .*mixed3b\b"):
        render(inception_random, "mixed3bb:5", steps=1, progress=False)
    with pytest.raises(mechscope.MechscopeError, match="whole layer"):
        render(inception_random, "mixed3b", steps=1, progress=False)


def test_inception_out_of_range_channel(inception_random):
    with pytest.raises(mechscope.MechscopeError, match="480 channels"):
        render(inception_random, "mixed3b:480", steps=1, size=48, progress=False)


def test_inception_render_small(inception_random):
    result = render(inception_random, "mixed3a:10", steps=3, thresholds=[1, 3], size=48, seed=0, progress=False)
    assert sorted(result.images) == [1, 3]
    assert result.final.shape == (1, 3, 48, 48)
    assert result.final.min() >= 0 and result.final.max() <= 1
    assert all(p.grad is None for p in inception_random.parameters())


# --- saving --------------------------------------------------------------------------------------------------


def test_save_and_repr_png(model, tmp_path):
    result = quick(model, steps=2, seed=0)
    path = result.save(tmp_path / "out" / "vis.png")
    assert path == tmp_path / "out" / "vis.png"
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        assert im.size == (32, 32) and im.mode == "RGB"
        saved = torch.from_numpy(np.asarray(im).copy()).float().permute(2, 0, 1) / 255
    assert torch.allclose(saved, result.final[0], atol=1 / 255 + 1e-6)
    data = result._repr_png_()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (32, 32)
    assert path.read_bytes() == data


def test_save_batch_as_grid(tmp_path):
    images = torch.rand(4, 3, 10, 10)
    path = RenderResult(images={3: images}).save(tmp_path / "grid.png")
    with Image.open(path) as im:
        assert im.size == (2 * 10 + 2, 2 * 10 + 2)  # 2x2 grid, 2 px gap


def test_training_mode_is_restored_and_eval_used_inside(model):
    seen = []
    model.conv.register_forward_hook(lambda m, i, o: seen.append(m.training))
    model.train()
    quick(model, steps=2)
    assert seen and not any(seen)  # optimized in eval mode
    assert model.training  # and given back as it came


def test_threshold_zero_is_refused(model):
    with pytest.raises(mechscope.MechscopeError, match="from 1 on"):
        quick(model, thresholds=[0, 4])


# ---- render_units -----------------------------------------------------------------------------------------------
import json  # noqa: E402

from mechscope.vision.featvis.render import render_units, units_objective  # noqa: E402


def test_units_objective_labels_and_layout():
    _, labels = units_objective(["a:1", "b:2@1,1"], diversity=2, negative=True)
    assert labels == ["a:1#0", "a:1#1", "a:1#neg_0", "a:1#neg_1", "b:2@1,1#0", "b:2@1,1#1", "b:2@1,1#neg_0",
                      "b:2@1,1#neg_1"]
    assert units_objective(["a:1", "b:2"])[1] == ["a:1", "b:2"]


def test_each_batch_element_gets_only_its_own_units_gradient(model):
    objective, _ = units_objective(["conv:0", "conv:3"])
    x = torch.rand(2, 3, 12, 12, requires_grad=True)
    acts = mechscope.capture(model, x, ["conv"])
    objective(acts).backward()
    alone = x[1:].detach().clone().requires_grad_(True)
    obj.channel("conv", 3)(mechscope.capture(model, alone, ["conv"])).backward()
    torch.testing.assert_close(x.grad[1:], alone.grad)


def test_render_units_batch_raises_every_unit(model):
    units = ["conv:0", "conv:1", "conv:2", "conv:3"]
    result = quick(model, steps=1, seed=0)  # warm
    result = render_units(model, units, size=24, steps=25, seed=0, progress=False, transforms=[])
    assert result.final.shape == (4, 3, 24, 24) and result.labels == units
    start = render_units(model, units, size=24, steps=1, seed=0, progress=False, transforms=[])
    assert all(b > a for a, b in zip(start.activations, result.activations, strict=True)), (start.activations,
                                                                                             result.activations)


def test_negative_images_lower_their_unit(model):
    result = render_units(model, ["conv:1"], size=24, steps=25, seed=0, negative=True, progress=False, transforms=[])
    assert result.labels == ["conv:1", "conv:1#neg"]
    assert result.activations[0] > result.activations[1]


def test_diversity_makes_different_images(model):
    result = render_units(model, ["conv:1"], size=24, steps=10, seed=0, diversity=3, progress=False)
    assert result.final.shape[0] == 3
    assert not torch.allclose(result.final[0], result.final[1], atol=1e-3)
    with pytest.raises(mechscope.MechscopeError, match="at least 1"):
        render_units(model, ["conv:1"], diversity=0)


def test_render_units_validates_everything_before_work(model, inception_random):
    with pytest.raises(mechscope.UnknownNameError):
        render_units(model, ["conv:1", "convv:1"], steps=1)
    with pytest.raises(mechscope.MechscopeError, match="4 channels"):
        render_units(model, ["conv:1", "conv:4"], steps=1)
    with pytest.raises(mechscope.MechscopeError, match=r"outside layer 'mixed4a''s 3x3 map at 48 px"):
        render_units(inception_random, ["mixed4a:476@3,3"], size=48, steps=1)
    with pytest.raises(mechscope.MechscopeError, match="at least one unit"):
        render_units(model, [], steps=1)


def test_save_dir_writes_images_and_json(model, tmp_path):
    result = render_units(model, ["conv:1", "conv:2@3,3"], size=16, steps=3, seed=0, diversity=2, progress=False)
    written = result.save_dir(tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["conv_1.json", "conv_1_0.png", "conv_1_1.png", "conv_2_at_3_3.json", "conv_2_at_3_3_0.png",
                     "conv_2_at_3_3_1.png"]
    record = json.loads((tmp_path / "conv_2_at_3_3.json").read_text())
    assert record["unit"] == "conv:2@3,3" and record["settings"]["diversity"] == 2
    assert record["final_activation"] == result.activations[2:] and len(record["trace"]) == 3
    assert Image.open(tmp_path / "conv_1_0.png").size == (16, 16)


# ---- render_interpolation ---------------------------------------------------------------------------------------
from mechscope.vision.featvis.render import render_interpolation  # noqa: E402


def test_interpolation_moves_from_one_unit_to_the_other(model):
    result = render_interpolation(model, "conv:0", "conv:3", frames=4, size=24, steps=30, seed=0, progress=False,
                                  transforms=[])
    assert result.final.shape == (4, 3, 24, 24)
    assert result.labels[0] == "conv:0->conv:3@0.00" and result.labels[-1] == "conv:0->conv:3@1.00"
    with torch.no_grad():
        acts = mechscope.capture(model, result.final, ["conv"])["conv"]
    a, b = acts[:, 0].mean((1, 2)), acts[:, 3].mean((1, 2))
    assert a[0] - b[0] > a[-1] - b[-1]  # the first frame leans to unit a, the last to unit b
    assert len(result.activations) == 4


def test_interpolation_validates(model):
    with pytest.raises(mechscope.MechscopeError, match="without a position"):
        render_interpolation(model, "conv:0@1,1", "conv:1", steps=1)
    with pytest.raises(mechscope.MechscopeError, match="at least 2 frames"):
        render_interpolation(model, "conv:0", "conv:1", frames=1, steps=1)
    with pytest.raises(mechscope.MechscopeError, match="4 channels"):
        render_interpolation(model, "conv:0", "conv:7", steps=1)


def test_alpha_images_keep_their_alpha_channel(model, tmp_path):
    from mechscope.vision.featvis.transform import collapse_alpha_random

    result = quick(model, param=lambda: param.image(16, alpha=True), transforms=[collapse_alpha_random()], steps=3)
    assert result.final.shape == (1, 4, 16, 16)
    with Image.open(result.save(tmp_path / "a.png")) as im:
        assert im.mode == "RGBA"


# ---- options, eval mode, undeclared widths, NaN/inf -------------------------------------------------------------
from mechscope.vision.featvis.render import RenderOptions  # noqa: E402


def test_options_object_and_keyword_overrides_agree(model):
    options = RenderOptions(steps=4, size=16, seed=3, progress=False, transforms=[])
    a = render(model, "conv:1", options=options)
    b = render(model, "conv:1", steps=4, size=16, seed=3, progress=False, transforms=[])
    c = render(model, "conv:1", options=RenderOptions(steps=9, size=16, seed=3, progress=False), steps=4,
               transforms=[])
    assert torch.equal(a.final, b.final) and torch.equal(a.final, c.final) and a.trace == b.trace
    units = render_units(model, ["conv:1"], options=options)
    assert units.settings["steps"] == 4 and units.settings["seed"] == 3 and units.final.shape == (1, 3, 16, 16)


def test_unknown_render_option_names_the_valid_ones(model):
    with pytest.raises(mechscope.MechscopeError, match=r"unknown render option\(s\) \['stpes'\]; valid: size, steps"):
        render(model, "conv:1", stpes=3)


def test_every_modules_training_flag_is_restored():
    net = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), drop=nn.Dropout(), relu=nn.ReLU()))
    net.train()
    net.drop.eval()  # a model left half in train mode stays so
    seen = []
    net.conv.register_forward_hook(lambda m, i, o: seen.append(m.training))
    quick(net, steps=2)
    assert seen and not any(seen)
    assert net.training and net.conv.training and not net.drop.training


def test_undeclared_width_is_measured_before_any_work():
    net = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 5, 3), relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1)))
    assert mechscope.units.layer_width(net, "relu") is None  # nothing declares it
    calls = []

    def param_fn(batch):
        calls.append(batch)
        return param.image(8, batch=batch)

    for call in (lambda: render_units(net, ["relu:0", "relu:5"], param=param_fn, steps=1),
                 lambda: render(net, "relu:5", steps=1),
                 lambda: render_interpolation(net, "relu:0", "pool:7", steps=1)):
        with pytest.raises(mechscope.MechscopeError, match=r"5 channels \(valid: 0..4\)"):
            call()
    assert calls == []
    assert render_units(net, ["relu:4"], size=8, steps=1, progress=False).final.shape == (1, 3, 8, 8)


class NaNAfter(nn.Module):
    """A conv whose output turns NaN from the ``after``-th forward on."""

    def __init__(self, after):
        super().__init__()
        self.conv, self.after, self.calls = nn.Conv2d(3, 4, 3), after, 0

    def forward(self, x):
        self.calls += 1
        y = self.conv(x)
        return y * float("nan") if self.calls >= self.after else y


@pytest.mark.parametrize("after", [1, 5, 20])
def test_nan_loss_stops_with_the_step_and_what_to_try(after):
    net = nn.Sequential(OrderedDict(body=NaNAfter(after)))
    with pytest.raises(mechscope.MechscopeError) as info:
        render_units(net, ["body:1", "body:2"], size=16, steps=40, seed=0, progress=False)
    message = str(info.value)
    assert f"became NaN at step {after} of 40" in message and "units body:1, body:2" in message
    assert "lower learning rate" in message and "fewer steps" in message
    assert net[0].calls <= after + 16  # stopped within one check interval, not after all 40 steps


def test_nan_weights_are_named():
    net = tiny_model()
    with torch.no_grad():
        net.conv.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(mechscope.MechscopeError, match=r"at step 1 of 3; the model's weights hold NaN/inf values "
                                                        r"\(conv.weight\)"):
        quick(net, "conv:0", steps=3)
    assert all(p.requires_grad for p in net.parameters()) and net.training


class ItemInForward(nn.Module):
    """A model whose forward reads a Python number, which the ``meta`` device cannot give."""

    def __init__(self):
        super().__init__()
        self.conv, self.relu = nn.Conv2d(3, 4, 3), nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x)) * (1.0 + 0 * x.mean().item())


def test_a_model_that_cannot_run_on_meta_still_renders():
    net = ItemInForward()
    assert render_units(net, ["relu:2"], size=8, steps=2, progress=False).final.shape == (1, 3, 8, 8)
