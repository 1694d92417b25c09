import pytest
import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.circuits.ablation import ablate_units, ablated, channel_means


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 2, 3, padding=1)).eval()


@torch.no_grad()
def test_zero_ablation_equals_removing_the_channels_from_the_next_layer():
    net, x = _net(), torch.rand(4, 3, 8, 8)
    cut = nn.Conv2d(6, 2, 3, padding=1)
    cut.load_state_dict(net[2].state_dict())
    cut.weight[:, [1, 4]] = 0                               # the next layer no longer reads channels 1 and 4
    with ablate_units(net, "1", [1, 4]):
        out = net(x)
    assert torch.allclose(out, cut(net[1](net[0](x))), atol=1e-6)
    assert torch.equal(net(x), net[2](net[1](net[0](x))))  # hook removed on exit


@torch.no_grad()
def test_mean_ablation_per_channel_and_per_position():
    net, x = _net(), torch.rand(5, 3, 8, 8)
    acts = torch.relu(net[0](x))
    per_pos = channel_means(net, "1", [x[:2], x[2:]])
    assert per_pos.shape == (6, 8, 8) and torch.allclose(per_pos, acts.mean(0), atol=1e-6)
    flat = channel_means(net, "1", [x], per_position=False)
    assert torch.allclose(flat, acts.mean((0, 2, 3)), atol=1e-6)
    for means in (per_pos, flat):
        out = ablated(acts, [2], "mean", means)
        assert torch.allclose(out[:, 2], means[2].expand(5, 8, 8))
        assert torch.equal(out[:, [0, 1, 3, 4, 5]], acts[:, [0, 1, 3, 4, 5]])
    with ablate_units(net, "1", [2], mode="mean", means=per_pos):
        hooked = net(x)
    assert torch.allclose(hooked, net[2](ablated(acts, [2], "mean", per_pos)), atol=1e-6)


def test_the_hook_is_removed_after_an_error_and_bad_input_is_refused():
    net, x = _net(), torch.rand(1, 3, 8, 8)
    with pytest.raises(MechscopeError, match="out of range"):
        with ablate_units(net, "1", [6]):
            net(x)
    assert not net[1]._forward_hooks
    with pytest.raises(MechscopeError, match="unknown ablation mode"):
        with ablate_units(net, "1", [0], mode="max"):
            pass
    with pytest.raises(MechscopeError, match="needs means"):
        with ablate_units(net, "1", [0], mode="mean"):
            pass
    with pytest.raises(MechscopeError, match="do not fit"):
        ablated(torch.rand(2, 6, 8, 8), [0], "mean", torch.zeros(6, 4, 4))
    with pytest.raises(MechscopeError, match="at least one batch"):
        channel_means(net, "1", [])
    acts = torch.rand(2, 6, 4, 4)
    assert ablated(acts, [], "zero") is acts


@torch.no_grad()
def test_ablating_a_named_layer_of_the_shapes_organism():
    from mechscope.zoo.registry import load

    net, x = load("shapes", device="cpu").eval(), torch.rand(2, 3, 64, 64)
    with ablate_units(net, "mixed3b", list(range(208))):
        blind = net(x)
    assert torch.allclose(blind[0], blind[1])                # nothing after mixed3b can tell the images apart
    assert not torch.allclose(net(x)[0], net(x)[1])


def test_random_unit_sets_are_seeded_same_size_and_avoid_the_chosen_units():
    from mechscope.vision.circuits.ablation import random_unit_sets

    sets = random_unit_sets(10, 3, 5, exclude=[0, 1], seed=4)
    assert sets == random_unit_sets(10, 3, 5, exclude=[0, 1], seed=4) and len(sets) == 5
    assert all(len(s) == 3 and not {0, 1} & set(s) for s in sets)
    with pytest.raises(MechscopeError, match="cannot draw sets of 9"):
        random_unit_sets(10, 9, 1, exclude=[0, 1])


@torch.no_grad()
def test_ablation_drops_split_forward_equals_the_hooked_full_model_on_the_organism():
    from mechscope.vision.circuits.ablation import ablation_drops
    from mechscope.zoo.registry import load

    net, x = load("shapes", device="cpu"), torch.rand(6, 3, 64, 64)
    score = lambda out: {str(i): float(v) for i, v in enumerate(out.sum(0)[:5])}  # noqa: E731
    sets = {"a": [3, 40, 100], "b": [7]}
    base, fast = ablation_drops(net, "mixed3b", sets, x, score)          # ShapesNet stage: split forward

    class Whole(nn.Module):                                               # the same model without stages
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, images):
            return self.net(images)

    base_hooked, hooked = ablation_drops(Whole(), "net.mixed3b", sets, x, score)
    assert base == pytest.approx(base_hooked, abs=1e-3)
    for name in sets:
        assert fast[name] == pytest.approx(hooked[name], abs=1e-3)
    assert any(abs(v) > 1e-3 for v in fast["a"].values())                # the ablation changed something
