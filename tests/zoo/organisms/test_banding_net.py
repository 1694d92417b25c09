import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.zoo.organisms.banding_net import HEADS, NUM_LOGITS, VARIANTS, BandingNet, file_stem, split_logits

pytestmark = pytest.mark.usefixtures("one_thread")


def _conv4(net, x):
    seen = {}
    handle = net.conv4_relu.register_forward_hook(lambda _m, _i, out: seen.setdefault("a", out))
    logits = net(x)
    handle.remove()
    return seen["a"], logits


@pytest.mark.parametrize("head", HEADS)
def test_each_head_reads_conv4_as_it_says(head):
    torch.manual_seed(0)
    net = BandingNet(head).eval()
    with torch.no_grad():
        a, logits = _conv4(net, torch.rand(2, 3, 32, 32))
        pooled = {"avg": a.mean((2, 3)), "max": a.amax((2, 3)), "avg_x": a.mean(3).flatten(1)}[head]
        assert torch.allclose(logits, net.logits(pooled), atol=1e-6)
    assert logits.shape == (2, NUM_LOGITS) and a.shape == (2, 32, 8, 8)
    assert [t.shape[1] for t in split_logits(logits).values()] == [2, 4, 3]


def test_layer_table_names_every_conv_and_bad_input_is_refused():
    net = BandingNet("max")
    assert [n for n in net.layer_table if not n.endswith("_pre_relu")] == ["conv1", "conv2", "conv3", "conv4",
                                                                           "logits"]
    assert net.layer_table["conv4_pre_relu"].path == "conv4" and net.layer_table["conv4"].path == "conv4_relu"
    with pytest.raises(MechscopeError):
        BandingNet("flatten")
    with pytest.raises(MechscopeError):
        BandingNet("avg_x")(torch.rand(1, 3, 48, 48))
    assert {VARIANTS[v][0] for v in VARIANTS} == set(HEADS) and file_stem("gap-rotated") == "banding_gap_rotated"
