"""Objectives: channel / neuron closures, their algebra, and the string shorthand."""

import pytest
import torch

import mechscope
from mechscope.vision.featvis import objectives as obj
from mechscope.vision.featvis.objectives import Objective


@pytest.fixture
def acts():
    """Fixed activations with values that are easy to compute by hand."""
    a = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)  # [batch, C, X, Y]
    b = torch.ones(2, 2, 3, 3)
    b[1] *= 5.0
    return {"a": a, "b": b}


def _const(value, layers=("a",)):
    return Objective(lambda _acts: torch.tensor(float(value)), layers, name=str(value))


# --- channel / neuron ----------------------------------------------------------------------------------------


def test_channel_is_mean_over_batch_and_space(acts):
    o = obj.channel("a", 1)
    assert o.layers == ("a",)
    assert o(acts).item() == pytest.approx(acts["a"][:, 1].mean().item())
    # by hand: batch 0 channel 1 holds 20..39 (mean 29.5), batch 1 channel 1 holds 80..99 (mean 89.5)
    assert o(acts).item() == pytest.approx((29.5 + 89.5) / 2)


def test_channel_batch_index(acts):
    assert obj.channel("a", 1, batch=0)(acts).item() == pytest.approx(29.5)
    assert obj.channel("a", 1, batch=1)(acts).item() == pytest.approx(89.5)
    assert obj.channel("b", 0, batch=1)(acts).item() == pytest.approx(5.0)


def test_neuron_position_and_default_centre(acts):
    a = acts["a"]
    # x indexes the first spatial axis, y the second
    assert obj.neuron("a", 2, 1, 3)(acts).item() == pytest.approx(a[:, 2, 1, 3].mean().item())
    assert obj.neuron("a", 2, 1, 3, batch=1)(acts).item() == pytest.approx(a[1, 2, 1, 3].item())
    # default: the centre, shape // 2 = (2, 2)
    assert obj.neuron("a", 0)(acts).item() == pytest.approx(a[:, 0, 2, 2].mean().item())
    assert obj.neuron("a", 0, batch=0)(acts).item() == pytest.approx(12.0)  # 2 * 5 + 2


def test_objectives_are_differentiable():
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    (obj.channel("x", 1) + obj.neuron("x", 2, 0, 0))({"x": x}).backward()
    grad = x.grad[0]
    assert torch.allclose(grad[1], torch.full((4, 4), 1 / 16))
    assert grad[2, 0, 0] == 1 and grad[2].sum() == 1
    assert torch.all(grad[0] == 0)


# --- algebra -------------------------------------------------------------------------------------------------


def test_add_sub_neg(acts):
    c = obj.channel("a", 0, batch=0)  # 0..19 -> 9.5
    d = obj.channel("b", 0, batch=1)  # 5
    assert (c + d)(acts).item() == pytest.approx(14.5)
    assert (c - d)(acts).item() == pytest.approx(4.5)
    assert (-c)(acts).item() == pytest.approx(-9.5)
    assert (c + 1)(acts).item() == pytest.approx(10.5)
    assert (1 + c)(acts).item() == pytest.approx(10.5)
    assert (c - 1.5)(acts).item() == pytest.approx(8.0)
    assert (10 - c)(acts).item() == pytest.approx(0.5)


def test_scalar_multiplication(acts):
    c = obj.channel("a", 0, batch=0)
    assert (2 * c)(acts).item() == pytest.approx(19.0)
    assert (c * 0.5)(acts).item() == pytest.approx(4.75)
    assert (c - 0.5 * obj.channel("b", 0, batch=1))(acts).item() == pytest.approx(7.0)


def test_python_sum_and_objective_sum(acts):
    parts = [_const(1.0), _const(2.0, ("b",)), _const(4.0)]
    assert sum(parts)(acts).item() == pytest.approx(7.0)  # sum() starts from 0: __radd__
    total = Objective.sum(parts)
    assert total(acts).item() == pytest.approx(7.0)
    assert total.layers == ("a", "b")
    assert Objective.sum(iter(parts))(acts).item() == pytest.approx(7.0)


def test_layers_are_unioned_without_duplicates():
    o = obj.channel("x", 0) + obj.channel("y", 1) - obj.channel("x", 2) + 3 * obj.neuron("z", 0)
    assert o.layers == ("x", "y", "z")
    assert sum([obj.channel("y", 0), obj.channel("x", 0), obj.channel("y", 1)]).layers == ("y", "x")
    assert (-obj.channel("x", 0)).layers == ("x",)
    assert (2 * obj.channel("x", 0) + 1).layers == ("x",)
    assert Objective(lambda a: 0, ["p", "q", "p"]).layers == ("p", "q")


def test_multiplying_two_objectives_raises():
    with pytest.raises(mechscope.MechscopeError):
        obj.channel("x", 0) * obj.channel("x", 1)
    with pytest.raises(mechscope.MechscopeError):
        obj.channel("x", 0) * "2"


def test_names_are_readable():
    o = obj.channel("mixed3b", 379) - 0.5 * obj.channel("mixed3b", 406)
    assert "mixed3b:379" in o.name and "mixed3b:406" in o.name
    assert "mixed3b:379" in repr(o)


# --- as_objective --------------------------------------------------------------------------------------------


def test_as_objective_channel_string():
    o = obj.as_objective("mixed3b:5")
    assert o.layers == ("mixed3b",)
    t = torch.randn(2, 8, 6, 6)
    assert torch.allclose(o({"mixed3b": t}), t[:, 5].mean())


def test_as_objective_neuron_string_x_is_first_spatial_axis():
    o = obj.as_objective("mixed3b:5@2,3")
    assert o.layers == ("mixed3b",)
    t = torch.zeros(1, 8, 6, 6)
    t[0, 5, 2, 3] = 7.0  # x = 2 on the first spatial axis, y = 3 on the second
    t[0, 5, 3, 2] = -100.0  # the transposed position must not be read
    t[0, 4, 2, 3] = -100.0  # nor another channel
    assert o({"mixed3b": t}).item() == pytest.approx(7.0)


def test_as_objective_passes_objectives_through():
    o = obj.channel("x", 1)
    assert obj.as_objective(o) is o


@pytest.mark.parametrize("spec", ["mixed3b", "blocks.1.attn:4", "not a name", "mixed3b:"])
def test_as_objective_rejects_non_units(spec):
    with pytest.raises(mechscope.MechscopeError):
        obj.as_objective(spec)


def test_as_objective_layer_only_message_suggests_a_channel():
    with pytest.raises(mechscope.MechscopeError, match=r"mixed3b:0"):
        obj.as_objective("mixed3b")


# ---- the rest of Lucid's objectives: values by hand -----------------------------------------------------------
import math  # noqa: E402
from collections import OrderedDict  # noqa: E402

from torch import nn  # noqa: E402

from mechscope.vision.featvis.render import render  # noqa: E402


def test_direction_is_the_mean_dot_product_and_cossim_floors():
    a = torch.zeros(1, 2, 1, 2)
    a[0, :, 0, 0] = torch.tensor([3.0, 4.0])  # aligned with vec
    a[0, :, 0, 1] = torch.tensor([-4.0, 3.0])  # orthogonal to vec
    vec = torch.tensor([3.0, 4.0]) / 5
    assert float(obj.direction("l", vec)({"l": a})) == pytest.approx((5.0 + 0.0) / 2)
    # cossim_pow 1: position 0 has cossim 1 (weight 1), position 1 has cossim 0, floored to 0.1 (times dot 0)
    assert float(obj.direction("l", vec, cossim_pow=1)({"l": a})) == pytest.approx(5.0 * (5 / (5 + 1e-4)) / (1 + 1e-4) / 2, rel=1e-4)
    assert float(obj.direction_neuron("l", vec, x=0, y=1)({"l": a})) == pytest.approx(0.0)
    assert float(obj.direction_neuron("l", vec, x=0, y=0)({"l": a})) == pytest.approx(5.0)


def test_channel_interpolate_weights_move_linearly():
    a = torch.zeros(3, 2, 2, 2)
    a[:, 0] = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)
    a[:, 1] = torch.tensor([10.0, 20.0, 30.0]).view(3, 1, 1)
    got = float(obj.channel_interpolate("l", 0, "l", 1)({"l": a}))
    assert got == pytest.approx(1 * 1 + (0.5 * 2 + 0.5 * 20) + 30)


def test_class_logit_and_deepdream():
    logits = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    assert float(obj.class_logit("fc", 1)({"fc": logits})) == 7.0
    assert float(obj.class_logit("fc", 1, batch=0)({"fc": logits})) == 2.0
    assert float(obj.deepdream("fc")({"fc": logits})) == pytest.approx((1 + 4 + 9 + 25) / 4)


def test_diversity_is_one_for_identical_and_zero_for_orthogonal_grams():
    same = torch.randn(1, 3, 4, 4).repeat(2, 1, 1, 1)
    assert float(obj.diversity("l")({"l": same})) == pytest.approx(1.0, abs=1e-5)
    ortho = torch.zeros(2, 2, 1, 1)
    ortho[0, 0] = 1.0  # Gram e00
    ortho[1, 1] = 1.0  # Gram e11
    assert float(obj.diversity("l")({"l": ortho})) == pytest.approx(0.0)
    four = torch.randn(1, 3, 4, 4).repeat(4, 1, 1, 1)
    assert float(obj.diversity("l")({"l": four})) == pytest.approx(3.0, abs=1e-4)  # each sees 3 equals
    assert float(obj.diversity("l", batch=slice(0, 2))({"l": four})) == pytest.approx(1.0, abs=1e-5)


def test_alignment_by_hand():
    a = torch.tensor([0.0, 1.0, 3.0]).view(3, 1, 1, 1)
    # d=1: (1-0)^2 + (3-1)^2 = 5, /2 ; d=2: (3-0)^2 = 9, /4
    assert float(obj.alignment("l")({"l": a})) == pytest.approx(-(5 / 2 + 9 / 4))


def test_image_penalties_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [3.0, 1.0]]]])  # [1, 1, 2, 2]
    acts = {"input": x}
    assert float(obj.L1()(acts)) == 5.0
    assert float(obj.L1(constant=1.0)(acts)) == 1 + 0 + 2 + 0
    assert float(obj.L2()(acts)) == pytest.approx(math.sqrt(1e-6 + 11))
    # vertical |3-0| + |1-1| ; horizontal |1-0| + |1-3|
    assert float(obj.total_variation()(acts)) == 3 + 0 + 1 + 2
    assert float(obj.blur_input_each_step()({"input": torch.full((1, 3, 5, 5), 0.3)})) == pytest.approx(0.0, abs=1e-10)
    assert float(obj.blur_input_each_step()({"input": torch.rand(1, 3, 5, 5)})) > 0
    assert obj.L1().layers == ("input",)


def test_neuron_position_outside_the_map_is_refused():
    with pytest.raises(mechscope.MechscopeError, match=r"position \(5, 0\) is outside the 3x3 map of layer 'l'"):
        obj.neuron("l", 0, 5, 0)({"l": torch.zeros(1, 1, 3, 3)})


# ---- every objective increases over a few Adam steps on a tiny model (as Lucid's test suite checks) -----------


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 6, 3), relu1=nn.ReLU(), conv2=nn.Conv2d(6, 6, 3), relu2=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(6, 4)))


OBJECTIVES = {
    "channel": lambda: obj.channel("conv2", 1),
    "neuron": lambda: obj.neuron("conv2", 2),
    "direction": lambda: obj.direction("conv1", torch.arange(6.0) - 2.5),
    "direction_cossim": lambda: obj.direction("conv1", torch.arange(6.0) - 2.5, cossim_pow=2),
    "direction_neuron": lambda: obj.direction_neuron("conv2", torch.ones(6)),
    "channel_interpolate": lambda: obj.channel_interpolate("conv1", 0, "conv2", 3),
    "class_logit": lambda: obj.class_logit("fc", 2),
    "deepdream": lambda: obj.deepdream("conv1"),
    "minus_diversity": lambda: -obj.diversity("conv1"),
    "alignment": lambda: obj.alignment("conv1"),
    "minus_L1": lambda: -obj.L1(constant=0.5),
    "minus_L2": lambda: -obj.L2(constant=0.5),
    "minus_total_variation": lambda: -obj.total_variation(),
    "minus_blur": lambda: -obj.blur_input_each_step(),
    "algebra": lambda: obj.channel("conv2", 0) + 0.5 * obj.neuron("conv1", 1) - 0.1 * obj.L2(),
}


# Penalties and alignment already sit at their optimum for Lucid's near-grey start: give them a noisy one.
NOISY_START = {"alignment", "minus_L1", "minus_L2", "minus_total_variation", "minus_blur"}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_increases_under_adam(tiny, name):
    from mechscope.vision.featvis import param

    batch = 3 if name in ("channel_interpolate", "minus_diversity", "alignment") else 1
    sd = 1.0 if name in NOISY_START else None
    result = render(tiny, OBJECTIVES[name](), param=lambda: param.image(16, batch=batch, sd=sd, fft=sd is None),
                    transforms=[], steps=12, seed=1, progress=False)
    assert result.trace[-1] > result.trace[0], (name, result.trace[0], result.trace[-1])
