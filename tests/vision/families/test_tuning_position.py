"""``position="layer_max"``: a unit's radial tuning curve does not depend on the other units measured with it."""

import pytest
import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.families.tuning import radial_tuning_curve


def test_layer_max_reads_every_subset_of_units_at_the_same_position():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()).eval()
    options = dict(n_orientations=24, size=16, progress=False)
    whole = radial_tuning_curve(net, "1", list(range(6)), position="layer_max", **options)
    assert whole.position == radial_tuning_curve(net, "1", list(range(6)), position="max", **options).position
    for units in ([0], [2, 5], [4, 1]):
        part = radial_tuning_curve(net, "1", units, position="layer_max", **options)
        assert part.position == whole.position
        assert torch.equal(part.responses, whole.responses[units])
    # "max" takes the position of the units asked for, so it can move with them
    moved = {radial_tuning_curve(net, "1", [c], position="max", **options).position for c in range(6)}
    assert moved - {whole.position} or len(moved) == 1
    with pytest.raises(MechscopeError, match="layer_max"):
        radial_tuning_curve(net, "1", [0], position="nowhere", **options)
