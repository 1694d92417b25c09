import numpy as np
import pytest
import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.families.detectors import (classify_units, frequency_preference, group_by_orientation, high_low_tuning,
                                       in_sigma)
from mechscope.vision.families.stimuli import curves, high_low, lines
from mechscope.vision.evidence.stats import activation_stats
from mechscope.vision.families.tuning import radial_tuning_curve


def _net(size=32):
    """Channel 0: a curve template (opening at 90 deg); 1: a line template (normal 0 deg);
    2: a high-low boundary template (high side at 0 deg, zero mean); 3: silent."""
    net = nn.Sequential(nn.Conv2d(3, 4, size, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0] = 1 - curves(torch.tensor([90.0]), 0.18, size=size)[0]
        net[0].weight[1] = 1 - lines(torch.tensor([0.0]), size=size)[0]
        net[0].weight[2] = high_low(torch.tensor([0.0]), 8.0, size=size)[0] - 0.5
    return net.eval()


def test_units_are_classified_by_construction():
    net = _net()
    rt = radial_tuning_curve(net, "1", n_orientations=72, size=32, background=0.0, colour=1.0, progress=False)
    hl = high_low_tuning(net, "1", n_orientations=72, size=32)
    assert float(hl.preferred[2]) == pytest.approx(0.0, abs=5.0) and float(hl.boundary_preference[2]) > 1.5
    rows = classify_units(rt, hl, curve_criteria={"max_opposite": 0.6})  # a template overlaps its mirror
    kinds = [r["kind"] for r in rows]
    assert kinds[0] == "curve" and kinds[1] == "line" and kinds[2] == "high_low" and kinds[3] == "other"
    assert rows[1]["preferred_deg"] == pytest.approx(0.0, abs=5.0)
    assert group_by_orientation(rows, "curve") == {2: ["1:0"]}      # 90 deg lies in sector 2 of 8


def test_mismatched_tunings_are_refused_and_sigma_uses_the_stats():
    net = _net()
    rt = radial_tuning_curve(net, "1", channels=[0, 1], n_orientations=8, size=32, progress=False)
    hl = high_low_tuning(net, "1", n_orientations=8, size=32)
    with pytest.raises(MechscopeError, match="same layer and channels"):
        classify_units(rt, hl)
    stats = activation_stats(net, [torch.rand(8, 3, 32, 32)], "1", progress=False)["1"]
    s = in_sigma(rt.responses, rt.channels, stats)
    expected = (rt.responses[0] - float(stats.mean[0])) / float(stats.std[0])
    np.testing.assert_allclose(s[0].numpy(), expected.numpy(), rtol=1e-5)


def test_frequency_preference_tells_a_fine_texture_unit_from_a_coarse_edge_unit():
    net = nn.Sequential(nn.Conv2d(3, 2, 17, padding=8, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, :, 7:10, 7:10] = -1.0        # 3x3 Laplacian: answers fine texture only
        net[0].weight[0, :, 8, 8] = 8.0
        net[0].weight[1, :, :, :8] = 1.0               # wide edge, each half two periods of the fine grating
        net[0].weight[1, :, :, 9:] = -1.0
    pref = frequency_preference(net, "1", low=1.5, high=16.0, size=64)
    assert pref[0] > 0.5 and pref[1] < -0.5
    with pytest.raises(MechscopeError, match="layer"):
        frequency_preference(net, "nope")
