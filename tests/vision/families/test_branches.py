import math

import pytest
import torch
from torch import nn

import mechscope
from mechscope.errors import MechscopeError
from mechscope.units import LayerInfo
from mechscope.vision.families.branches import (branch_specialization, branch_split, colour_stimuli, colour_vs_grey,
                                       first_layer_svd, hypergeom_sf)


def _colour_net() -> nn.Module:
    """Unit 0 reads red minus green, unit 1 the sum of the channels, unit 2 nothing (1x1 conv)."""
    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.zero_()
        net[0].weight[0, :, 0, 0] = torch.tensor([1.0, -1.0, 0.0])
        net[0].weight[1, :, 0, 0] = torch.tensor([1.0, 1.0, 1.0])
    return net


def test_colour_stimuli_grey_set_is_grey():
    colour, grey = colour_stimuli(16)
    assert colour.shape == (42, 3, 16, 16) and grey.shape == (48, 3, 16, 16)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    assert (colour[:, 0] - colour[:, 1]).abs().max() == 1.0


def test_red_minus_green_unit_is_colour_and_sum_unit_is_not():
    r = colour_vs_grey(_colour_net(), "1", size=16)
    assert r.channels == [0, 1, 2] and r.position == (8, 8)
    assert r.colour[0] == pytest.approx(1.0) and r.grey[0] == pytest.approx(0.0, abs=1e-6)
    assert r.grey[1] == pytest.approx(3.0)  # white centre
    assert r.is_colour.tolist() == [True, False, False]
    assert r.colour_units() == [0]
    one = colour_vs_grey(_colour_net(), "1:1", size=16)
    assert one.channels == [1] and one.is_colour.tolist() == [False]


def test_hypergeometric_matches_the_closed_form():
    # all 4 flagged of 8 in a branch of 4: 1 / C(8, 4)
    assert hypergeom_sf(4, 8, 4, 4) == pytest.approx(1 / math.comb(8, 4))
    assert hypergeom_sf(0, 10, 3, 5) == pytest.approx(1.0)
    # the tail sums the pmf
    pmf = [math.comb(5, i) * math.comb(15, 6 - i) / math.comb(20, 6) for i in range(6)]
    assert hypergeom_sf(2, 20, 5, 6) == pytest.approx(sum(pmf[2:]))
    with pytest.raises(MechscopeError, match="hypergeometric"):
        hypergeom_sf(1, 5, 6, 2)


class _FakeBlock(nn.Module):
    """A layer_table only: a block of 8 + 16 + 4 + 4 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.blk = nn.Identity()
        self.layer_table = {"blk_1x1": LayerInfo("blk", 8, branch=True), "blk_3x3": LayerInfo("blk", 16, branch=True),
                            "blk_5x5": LayerInfo("blk", 4, branch=True),
                            "blk_pool_reduce": LayerInfo("blk", 4, branch=True), "blk": LayerInfo("blk", 32)}


def test_colour_units_all_in_one_branch_are_unlikely_by_chance():
    model = _FakeBlock()
    flags = [False] * 32
    for c in range(24, 28):  # the whole 5x5 branch
        flags[c] = True
    s = branch_specialization(model, "blk", flags)
    assert s.branches == ["1x1", "3x3", "5x5", "pool_reduce"] and s.widths == [8, 16, 4, 4]
    assert s.counts == [0, 0, 4, 0] and s.flagged == 4
    assert s.p_values[2] == pytest.approx(1 / math.comb(32, 4))
    assert s.p_values[2] < 1e-4 and s.p_values[0] == 1.0
    assert s.branch_of(25) == "5x5" and s.branch_of(0) == "1x1"
    # spread evenly, nothing is surprising
    even = branch_specialization(model, "blk", {0: True, 8: True, "blk:9": True, 24: True, 28: True})
    assert even.counts == [1, 2, 1, 1] and min(even.p_values) > 0.2
    assert even.as_dict()["branches"][1] == {"branch": "3x3", "width": 16, "count": 2,
                                             "p_value": even.p_values[1]}


def test_branch_errors_name_the_problem():
    model = _FakeBlock()
    with pytest.raises(MechscopeError, match="31 flags given for 'blk', which has 32 channels"):
        branch_specialization(model, "blk", [False] * 31)
    with pytest.raises(MechscopeError, match="not a unit of 'blk'"):
        branch_specialization(model, "blk", {"other:1": True})
    with pytest.raises(MechscopeError, match="out of range"):
        branch_specialization(model, "blk", {40: True})
    with pytest.raises(MechscopeError, match="not an inception block"):
        branch_specialization(_colour_net(), "0", [False])
    with pytest.raises(KeyError, match="blok"):
        branch_specialization(model, "blok", [False] * 32)
    with pytest.raises(MechscopeError, match="non-negative"):
        branch_split({}, [])


def test_svd_recovers_grey_low_and_colour_high_frequency_components():
    k = 6
    grey_low = torch.ones(3, k, k, dtype=torch.float64)  # grey, constant: frequency 0
    yy, xx = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    checker = ((-1.0) ** (xx + yy)).to(torch.float64)  # Nyquist in both axes
    colour_high = torch.stack([checker, -checker, torch.zeros_like(checker)])  # red minus green
    v1, v2 = grey_low / grey_low.norm(), colour_high / colour_high.norm()
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(10, 2, generator=g, dtype=torch.float64))
    w = 3.0 * u[:, 0, None, None, None] * v1 + 1.0 * u[:, 1, None, None, None] * v2  # [10, 3, k, k]
    svd = first_layer_svd(w)
    assert svd.components.shape == (10, 3, k, k)
    assert svd.singular_values[:2].tolist() == pytest.approx([3.0, 1.0])
    assert svd.explained[:2].tolist() == pytest.approx([0.9, 0.1])
    assert svd.colour[0] == pytest.approx(0.0, abs=1e-9) and svd.frequency[0] == pytest.approx(0.0, abs=1e-9)
    assert svd.colour[1] == pytest.approx(1.0) and svd.frequency[1] == pytest.approx(1.0)
    assert abs(float((svd.components[0] * v1).sum())) == pytest.approx(1.0)
    with pytest.raises(MechscopeError, match=r"\[C_out, 3, kh, kw\]"):
        first_layer_svd(torch.zeros(4, 1, 3, 3))


def test_shapes_organism_branches_sum_to_block_width():
    model = mechscope.load("shapes")
    for block in ("mixed3a",):
        r = colour_vs_grey(model, block, size=64)
        s = branch_specialization(model, block, r)
        width = model.layer_table[block].channels
        assert s.branches == ["1x1", "3x3", "5x5", "pool_reduce"]
        assert sum(s.widths) == width == len(r.channels)
        assert s.widths == [model.layer_table[f"{block}_{b}"].channels for b in s.branches]
        assert sum(s.counts) == s.flagged == int(r.is_colour.sum())
        assert all(0.0 <= p <= 1.0 for p in s.p_values)
    b = branch_specialization(model, "mixed3b", {"mixed3b:0": True})  # widths only: no forward pass
    assert sum(b.widths) == model.layer_table["mixed3b"].channels and b.counts == [1, 0, 0, 0]
    svd = first_layer_svd(model.conv2d0.conv.weight)
    assert all(0.0 <= c <= 1.0 for c in svd.colour) and all(0.0 <= f <= 1.0 for f in svd.frequency)
