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
