import pytest
import torch

from mechscope.capture import capture
from mechscope.errors import MechscopeError
from mechscope.zoo.organisms.branched_net import WIDTHS, BranchedNet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("groups", [2, 3])
def test_grouping_isolates_branches(groups):
    """A branch's conv3 units get no gradient from the first-layer channels of another branch, and do from
    their own."""
    torch.manual_seed(0)
    net = BranchedNet(groups).eval()
    x = torch.rand(2, 3, 64, 64)
    feats = {}

    def keep(name):
        def hook(_, __, out):
            out.retain_grad()
            feats[name] = out
        return hook

    handles = [net.conv1.register_forward_hook(keep("conv1")), net.conv3_bn.register_forward_hook(keep("conv3"))]
    net(x)
    for handle in handles:
        handle.remove()
    h = feats["conv3"]
    last = groups - 1
    h[:, list(net.branch_channels("conv3", last))].sum().backward()
    grad = feats["conv1"].grad.abs().sum((0, 2, 3))  # [24]
    for b in range(groups):
        share = grad[list(net.branch_channels("conv1", b))].sum()
        assert (share > 0) if b == last else (share == 0), (b, grad)


def test_unbranched_mixes_every_channel():
    net = BranchedNet(1)
    assert net.conv2.groups == 1 and net.conv3.groups == 1
    assert net.branch_channels("conv1", 0) == range(WIDTHS["conv1"])


def test_layer_table_names_capture_and_bad_groups():
    net = BranchedNet(3).eval()
    acts = capture(net, torch.rand(1, 3, 64, 64), ["conv1", "conv2_pre_relu", "conv3", "avgpool", "logits"])
    assert acts["conv1"].shape == (1, 24, 32, 32) and acts["conv3"].shape == (1, 96, 8, 8)
    assert acts["logits"].shape == (1, 61)
    with pytest.raises(MechscopeError, match="groups must be one of"):
        BranchedNet(4)
    with pytest.raises(MechscopeError, match="no branch"):
        net.branch_channels("conv2", 3)
