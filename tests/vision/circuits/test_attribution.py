import pytest
import torch
from torch import nn

import mechscope
from mechscope.errors import MechscopeError, UnknownNameError
from mechscope.vision.circuits.attribution import attribute, attribution_map_plot, top_contributors_plot


def _reader_net():
    """Layer "2" channel 0 reads only channel 1 of layer "1" at kernel offset (0, 2) with weight 3.

    Layer "1" is positive everywhere (bias 5 after a small conv, then ReLU), so the answer is known: the
    attribution of ``2:0@x,y`` is ``3 * a1[1, x - 1, y + 1]``, all on channel 1 at that one position.
    """
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))
    with torch.no_grad():
        net[0].weight.mul_(0.1)
        net[0].bias.fill_(5.0)
        net[2].weight.zero_()
        net[2].bias.fill_(0.5)
        net[2].weight[0, 1, 0, 2] = 3.0
    return net


def _linear_net():
    """Two convolutions with no ReLU between them, in float64: linear from layer "0" to layer "1"."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.Conv2d(5, 4, 3, padding=1)).double()


def test_a_kernel_that_reads_one_channel_at_one_offset_is_attributed_there():
    net, images = _reader_net(), torch.rand(2, 3, 8, 8)
    attr = attribute(net, images, "2:0@5,3", "1")
    a1 = net[1](net[0](images)).detach()
    assert attr.values.shape == (2, 4, 8, 8) and attr.total.shape == (2,)
    expected = torch.zeros_like(attr.values)
    expected[:, 1, 4, 4] = 3.0 * a1[:, 1, 4, 4]
    torch.testing.assert_close(attr.values, expected)
    assert attr.by_channel[:, [0, 2, 3]].abs().max() == 0 and attr.by_channel[0, 1] > 0
    assert attr.spatial.shape == (2, 8, 8) and attr.spatial[0].nonzero().tolist() == [[4, 4]]
    assert attr.top(2, image=1)[0] == (1, pytest.approx(float(3.0 * a1[1, 1, 4, 4])))
    torch.testing.assert_close(attr.residual, torch.full((2,), 0.5))
    assert attr.positions.tolist() == [[5, 3], [5, 3]]


@pytest.mark.parametrize("unit, reduce, bias_times", [("1:2@3,4", "max", 1), ("1:2", "max", 1), ("1:2", "sum", 36)])
def test_completeness_on_a_linear_path(unit, reduce, bias_times):
    net = _linear_net()
    images = torch.rand(3, 3, 6, 6, dtype=torch.float64)
    attr = attribute(net, images, unit, "0", reduce=reduce)
    expected = net(images)[:, 2]
    expected = expected.sum((1, 2)) if reduce == "sum" else expected[torch.arange(3), attr.positions[:, 0],
                                                                     attr.positions[:, 1]]
    torch.testing.assert_close(attr.total, expected.detach(), rtol=0, atol=1e-12)
    bias = net[1].bias[2].detach() * bias_times
    torch.testing.assert_close(attr.values.sum((1, 2, 3)) + bias, attr.total, rtol=0, atol=1e-12)
    torch.testing.assert_close(attr.residual, bias.expand(3), rtol=0, atol=1e-12)


def test_positions_by_name_by_argument_and_by_argmax():
    net, images = _linear_net(), torch.rand(4, 3, 6, 6, dtype=torch.float64)
    by_name = attribute(net, images, "1:1@2,5", "0")
    by_arg = attribute(net, images, "1:1", "0", position=(2, 5))
    torch.testing.assert_close(by_name.values, by_arg.values, rtol=0, atol=0)
    assert by_name.positions.tolist() == [[2, 5]] * 4
    free = attribute(net, images, "1:1", "0")
    maps = net(images)[:, 1].detach()
    flat = maps.flatten(1).argmax(1)
    assert free.positions.tolist() == torch.stack([flat // 6, flat % 6], 1).tolist()
    torch.testing.assert_close(free.total, maps.flatten(1).amax(1))
    assert attribute(net, images, "1:1", "0", reduce="sum").positions is None
    with pytest.raises(MechscopeError, match="two positions"):
        attribute(net, images, "1:1@2,5", "0", position=(1, 1))
    with pytest.raises(MechscopeError, match="outside layer '1'.*6×6"):
        attribute(net, images, "1:1@6,0", "0")
    with pytest.raises(MechscopeError, match="no position"):
        attribute(net, images, "1:1@2,5", "0", reduce="sum")
    with pytest.raises(MechscopeError, match="reduce must be"):
        attribute(net, images, "1:1", "0", reduce="mean")


def test_a_source_after_the_unit_or_unknown_names_are_refused():
    net, images = _reader_net(), torch.rand(1, 3, 8, 8)
    with pytest.raises(MechscopeError, match="'2' comes after the unit's layer '0'.*must run before"):
        attribute(net, images, "0:1", "2")
    with pytest.raises(MechscopeError, match="unit's own layer"):
        attribute(net, images, "2:0", "2")
    with pytest.raises(UnknownNameError, match="Closest valid names"):
        attribute(net, images, "2:0", "11")
    with pytest.raises(MechscopeError, match="out of range"):
        attribute(net, images, "2:7", "1")
    with pytest.raises(MechscopeError, match="expected a unit"):
        attribute(net, images, "2", "1")
    with pytest.raises(MechscopeError, match="source_layer must be a layer"):
        attribute(net, images, "2:0", "1:0")


class _TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.left(x) + self.right(x)


def test_a_layer_on_another_branch_is_refused():
    with pytest.raises(MechscopeError, match="does not depend on layer 'right'"):
        attribute(_TwoBranches(), torch.rand(1, 3, 4, 4), "left:0", "right")


def test_eval_mode_is_used_and_restored_and_no_grads_are_left():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                        nn.Conv2d(4, 2, 3, padding=1))
    net.train()
    net[1].eval()   # a mixed state, restored module by module
    images = torch.rand(3, 3, 6, 6)
    both = attribute(net, images, "4:1", "2")
    one = attribute(net, images[1:2], "4:1", "2")
    torch.testing.assert_close(both.values[1:2], one.values)   # eval: dropout off, BN per image
    assert [m.training for m in net] == [True, False, True, True, True]
    assert all(p.grad is None for p in net.parameters())
    assert not images.requires_grad and images.grad is None


@pytest.fixture(scope="module")
def shapes():
    return mechscope.load("shapes", device="cpu")


def test_on_the_shapes_organism(shapes):
    images = torch.rand(2, 3, 64, 64)
    attr = attribute(shapes, images, "mixed3b:5", "mixed3a")
    assert attr.values.shape == (2, 128, 16, 16) and attr.by_channel.shape == (2, 128)
    assert attr.unit_grid == (16, 16) and attr.input_size == (64, 64)
    assert len(attr.top(5)) == 5 and all(isinstance(c, int) for c, _ in attr.top(5))
    # mixed3a -> the 1x1 branch's conv is linear: completeness holds up to float32 rounding
    lin = attribute(shapes, images, "mixed3b_1x1_pre_relu:5@8,8", "mixed3a")
    bias = shapes.mixed3b.b1x1.conv.bias[5].detach()
    torch.testing.assert_close(lin.residual, bias.expand(2), rtol=0, atol=1e-4)
    with pytest.raises(MechscopeError, match="comes after"):
        attribute(shapes, images, "mixed3a:0", "mixed3b")
    assert not shapes.training and all(p.grad is None for p in shapes.parameters())


def test_plots_return_axes_with_a_symmetric_diverging_map_and_signed_bars():
    net = _reader_net()
    with torch.no_grad():
        net[2].weight[0, 2, 1, 1] = -1.0
    attr = attribute(net, torch.rand(1, 3, 8, 8), "2:0@4,4", "1")
    ax = attribution_map_plot(attr)
    image = ax.images[0]
    assert image.get_cmap().name == "RdBu_r" and image.norm.vmin == -image.norm.vmax > -float("inf")
    assert image.get_extent() == [0, 8, 8, 0]
    strided = nn.Sequential(nn.Conv2d(3, 2, 3, stride=2, padding=1), nn.Conv2d(2, 1, 1))
    coarse = attribute(strided, torch.rand(1, 3, 8, 8), "1:0", "0")
    assert attribution_map_plot(coarse).images[0].get_extent() == [0, 8, 8, 0]          # input pixels
    assert attribution_map_plot(coarse, grid="layer").images[0].get_extent() == [0, 4, 4, 0]
    bars = top_contributors_plot(attr, k=3)
    colours = [tuple(round(v, 3) for v in p.get_facecolor()[:3]) for p in bars.patches]
    values = [p.get_width() for p in bars.patches]
    assert len(values) == 3 and values[-1] > 0 and min(values) < 0       # largest |value| on top
    assert colours[values.index(max(values))][0] > colours[values.index(max(values))][2]   # red positive
    assert colours[values.index(min(values))][2] > colours[values.index(min(values))][0]   # blue negative
    assert attr._repr_png_().startswith(b"\x89PNG")
