import torch

from mechscope.capture import capture
from mechscope.units import layer_table
from mechscope.zoo.inceptionv1 import InceptionV1
from mechscope.zoo.organisms.shapes_net import NUM_LOGITS, ShapesNet, fold_batchnorm, split_logits


def test_layer_names_follow_inceptionv1s_scheme():
    ours, theirs = layer_table(ShapesNet()), layer_table(InceptionV1())
    assert "mixed3b_5x5_bottleneck" in ours and "conv2d2_pre_relu" in ours
    for name, info in ours.items():
        if name in theirs:           # same name -> same module path and flags (widths differ)
            assert (info.path, info.pre_relu, info.branch) == (theirs[name].path, theirs[name].pre_relu,
                                                               theirs[name].branch), name
    assert set(ours) - set(theirs) == set()


def test_declared_widths_and_shapes_match_the_forward():
    net = ShapesNet().eval()
    names = list(layer_table(net))
    acts = capture(net, torch.rand(2, 3, 64, 64), names)
    for name, info in layer_table(net).items():
        assert acts[name].shape[1] == info.channels, name
    assert acts["conv2d0"].shape[-2:] == (32, 32) and acts["mixed3b"].shape[-2:] == (16, 16)
    assert acts["mixed4b"].shape[-2:] == (8, 8) and acts["softmax2_pre_activation"].shape == (2, NUM_LOGITS)


def test_folding_batchnorm_keeps_the_function():
    torch.manual_seed(0)
    net = ShapesNet(batchnorm=True).train()
    x = torch.rand(8, 3, 64, 64)
    for _ in range(3):                       # give the running statistics non-trivial values
        net(x * torch.rand(1))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    net.eval()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(folded(x), net(x), atol=1e-4, rtol=1e-4)
    assert set(folded.state_dict()) == set(ShapesNet().state_dict())


def test_split_logits():
    parts = split_logits(torch.arange(2 * NUM_LOGITS, dtype=torch.float32).reshape(2, NUM_LOGITS))
    assert [p.shape[1] for p in parts.values()] == [10, 40, 9, 2]
    assert float(parts["curve"][0, 0]) == 10.0
