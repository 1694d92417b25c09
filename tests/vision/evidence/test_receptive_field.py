"""Receptive fields by gradient probing, checked against brute force, textbook sizes and InceptionV1's geometry."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.evidence.receptive_field import RF, RFGrid, receptive_field, receptive_field_map


def tiny_net() -> nn.Sequential:
    """Conv(3,4,3) -> ReLU -> MaxPool(2) -> Conv(4,4,3,stride 2) -> ReLU, with zero padding at the borders."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU())


def brute_force_boxes(net: nn.Sequential, layer: int, size: int) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """Perturb each pixel (all channels, +-1000) of a noise image in a ReLU-free float64 copy of ``net``; the box
    of a position is the bounding box of the pixels whose perturbation changes any channel there."""
    linear = copy.deepcopy(net).double()
    for i, m in enumerate(linear):
        if isinstance(m, nn.ReLU):
            linear[i] = nn.Identity()
    head = linear[: layer + 1]
    base = torch.rand(1, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    batch = base.repeat(2 * size * size, 1, 1, 1)
    for k in range(size * size):
        batch[2 * k, :, k // size, k % size] += 1000.0
        batch[2 * k + 1, :, k // size, k % size] -= 1000.0
    with torch.no_grad():
        changed = (head(batch) - head(base)).abs().gt(1e-6).any(1)  # [2 * pixels, X, Y]
    changed = changed.view(size, size, 2, *changed.shape[1:]).any(2)  # [H, W, X, Y]
    boxes = {}
    for x in range(changed.shape[2]):
        for y in range(changed.shape[3]):
            rows = changed[:, :, x, y].any(1).nonzero().flatten()
            cols = changed[:, :, x, y].any(0).nonzero().flatten()
            boxes[x, y] = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    return boxes


@pytest.mark.parametrize("layer", [0, 2, 4])
def test_matches_brute_force_on_a_tiny_net(layer):
    net = tiny_net()
    expected = brute_force_boxes(net, layer, 16)
    grid = receptive_field_map(net, str(layer), 16)
    assert {p: grid.box(*p) for p in expected} == expected
    for p in [(0, 0), (1, 2), (grid.shape[0] - 1, grid.shape[1] - 1), (grid.shape[0] // 2, 0)]:
        assert receptive_field(net, str(layer), 16, position=p).box == expected[p]


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
                          nn.Conv2d(4, 4, 3, stride=2), nn.ReLU()),
    lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=2, dilation=2), nn.ReLU(),
                          nn.MaxPool2d(2, 1, padding=1, dilation=2), nn.Conv2d(4, 4, 1, stride=3)),
    lambda: nn.Sequential(nn.Conv2d(3, 4, 5, padding=2, stride=3), nn.ReLU6(), nn.AvgPool2d(2),
                          nn.Conv2d(4, 4, 3, padding=1), nn.Hardtanh()),  # a field wider than the image
], ids=["ceil-mode-pool", "dilated", "wider-than-image"])
def test_matches_brute_force_on_other_geometries(make):
    torch.manual_seed(2)
    net = make()
    layer = len(net) - 1
    expected = brute_force_boxes(net, layer, 17)
    grid = receptive_field_map(net, str(layer), 17)
    assert {p: grid.box(*p) for p in expected} == expected


def test_final_layer_geometry_of_the_tiny_net():
    # conv 3x3 (3 px), max-pool 2/2 (+1 px, jump 2), conv 3x3 stride 2 (+2 * 2 px): 8 px.  Unit 2 sees pool
    # cells [3, 5], conv cells [6, 11], pixels [5, 13).
    rf = receptive_field(tiny_net(), "4", 16, position=(2, 2))
    assert rf.size == (8, 8) and rf.box == rf.unclipped == (5, 5, 13, 13) and not rf.clipped


def conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


@pytest.mark.parametrize(("net", "size"), [
    (nn.Sequential(conv(3, 2)), 3),
    (nn.Sequential(conv(3, 2), nn.ReLU(), conv(2, 2)), 5),
    (nn.Sequential(conv(3, 2, stride=2), nn.ReLU(), conv(2, 2)), 7),
])
def test_textbook_sizes(net, size):
    layer = str(len(net) - 1)
    rf = receptive_field(net, layer, 32)
    top, left, bottom, right = rf.box
    assert (bottom - top, right - left) == rf.size == (size, size)
    assert receptive_field_map(net, layer, 32).size == (size, size)


def test_border_fields_are_clipped():
    net = nn.Sequential(conv(3, 2), nn.ReLU(), conv(2, 2))
    corner = receptive_field(net, "2", 12, position=(0, 0))
    assert corner.box == (0, 0, 3, 3) and corner.size == (5, 5) and corner.clipped
    assert corner.unclipped == (-2, -2, 3, 3)
    far = receptive_field(net, "2", 12, position=(11, 5))
    assert far.box == (9, 3, 12, 8) and far.unclipped == (9, 3, 14, 8)


def test_large_maps_are_extrapolated_exactly():
    net = nn.Sequential(conv(3, 2, stride=2), nn.ReLU(), conv(2, 2))
    grid = receptive_field_map(net, "2", 64)  # a 32x32 map: probed near borders and centre, the rest fitted
    assert grid.shape == (32, 32) and grid.size == (7, 7)
    for p in range(32):  # first conv unit o sees [2o-1, 2o+2); second conv unit p sees first-conv [p-1, p+1]
        assert grid.rows[p] == grid.cols[p] == (max(2 * p - 3, 0), min(2 * p + 4, 64))


def test_crops():
    net = nn.Sequential(conv(3, 2), nn.ReLU(), conv(2, 2))
    image, batch = torch.rand(3, 12, 12), torch.rand(4, 3, 12, 12)
    rf = receptive_field(net, "2", 12, position=(6, 6))
    assert rf.crop(image).shape == (3, 5, 5) and rf.crop(batch).shape == (4, 3, 5, 5)
    assert torch.equal(rf.crop(image), image[:, 4:9, 4:9])
    grid = receptive_field_map(net, "2", 12)
    assert isinstance(grid, RFGrid) and grid.crop(batch, 0, 6).shape == (4, 3, 3, 5)
    assert grid.rf(0, 6) == RF((0, 4, 3, 9), (5, 5))
    with pytest.raises(MechscopeError, match="crop takes"):
        rf.crop(torch.rand(12, 12))
    with pytest.raises(MechscopeError, match="outside"):
        grid.box(12, 0)


def test_rectangular_inputs_and_float64_models():
    net = nn.Sequential(conv(3, 2), nn.ReLU(), conv(2, 2)).double()
    rf = receptive_field(net, "2", (10, 20), position=(9, 10))
    assert rf.box == (7, 8, 10, 13)
    assert receptive_field_map(net, "2", (10, 20)).shape == (10, 20)


class DeadThenFunctional(nn.Module):
    """A ReLU that never fires and a functional max-pool: plain gradients would hide the whole field."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = conv(3, 2), conv(2, 2)
        nn.init.constant_(self.a.bias, -1e6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(F.max_pool2d(F.relu(self.a(x)), 3, 1, 1))


def test_dead_relus_and_max_pools_do_not_hide_the_field():
    rf = receptive_field(DeadThenFunctional(), "b", 16)
    assert rf.size == (7, 7)  # 3x3 conv, 3x3 pool, 3x3 conv


class Branches(nn.Module):
    """A 1x1 branch and a 5x5 branch, concatenated: channels with different fields."""

    def __init__(self) -> None:
        super().__init__()
        self.small, self.large = nn.Conv2d(3, 1, 1), nn.Conv2d(3, 1, 5, padding=2)
        self.cat = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cat(torch.cat([self.small(x), self.large(x)], 1))


def test_unit_names_pick_a_channel_and_a_position():
    net = Branches()
    assert receptive_field(net, "cat:0", 9).size == (1, 1)
    assert receptive_field(net, "cat:1", 9).size == (5, 5)
    assert receptive_field(net, "cat", 9).size == (5, 5)
    assert receptive_field(net, "cat:1@0,8", 9).box == (0, 6, 3, 9)


def test_eval_mode_is_used_and_restored():
    net = nn.Sequential(conv(3, 4), nn.BatchNorm2d(4), nn.Dropout(0.9), nn.ReLU(), conv(4, 4)).train()
    stats = net[1].running_mean.clone()
    assert receptive_field(net, "4", 16).size == (5, 5)
    assert all(m.training for m in net.modules()) and torch.equal(net[1].running_mean, stats)
    assert all(p.grad is None for p in net.parameters())


def test_errors():
    net = nn.Sequential(conv(3, 2), nn.Flatten(2))
    with pytest.raises(MechscopeError, match="position"):
        receptive_field(net, "0", 8, position=(8, 0))
    with pytest.raises(MechscopeError, match=r"\[batch, channel, x, y\]"):
        receptive_field(net, "1", 8)
    with pytest.raises(MechscopeError, match="unknown layer"):
        receptive_field(net, "nope", 8)
    with pytest.raises(MechscopeError, match="channel 5 is out of range"):
        receptive_field(net, "0:5", 8)
    with pytest.raises(MechscopeError, match="input_size"):
        receptive_field(net, "0", (8, 8, 8))


def test_inceptionv1_fields(inception):
    modes = [m.training for m in inception.modules()]
    # conv2d0: 7x7 stride 2 -> 7 px.  maxpool0 3x3/2 adds 2 * 2, conv2d1 (1x1) nothing, conv2d2 (3x3) adds 2 * 4:
    # 7 + 4 + 8 = 19 px.  TF SAME padding at 224: conv2d0 pads 2 before (unit o sees [2o-2, 2o+5)), maxpool0 pads
    # 0 before (unit q sees conv2d0 [2q, 2q+3)), conv2d2 pads 1 (unit p sees maxpool0 [p-1, p+1]), so conv2d2's
    # unit p sees conv2d0 [2p-2, 2p+2] and pixels [4p-6, 4p+13).
    assert receptive_field(inception, "conv2d0", 224).size == (7, 7)
    centre = receptive_field(inception, "conv2d2", 224)
    assert centre.size == (19, 19) and centre.box == (4 * 28 - 6, 4 * 28 - 6, 4 * 28 + 13, 4 * 28 + 13)
    corner = receptive_field(inception, "conv2d2", 224, position=(0, 55))
    assert corner.box == (0, 214, 13, 224) and corner.unclipped == (-6, 214, 13, 233) and corner.clipped
    assert [m.training for m in inception.modules()] == modes
