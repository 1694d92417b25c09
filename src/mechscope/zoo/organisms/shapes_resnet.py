"""The "shapes-resnet" organism: a small ResNet (basic blocks) for the shapes world, a third architecture for
universality (``mechscope train shapes --arch resnet``).

Layout (at a 64-px input): ``stem`` 3×3 stride 2 (24 ch, 32×32) → ``block1`` (24, 32×32) → ``block2`` stride 2
(64, 16×16) → ``block3`` (64, 16×16) → ``block4`` stride 2 (96, 8×8) → ``avgpool`` → ``logits`` (61: the four
tasks of the shapes world, ``split_logits`` order, as ``ShapesNet``).  A basic block is
``relu(conv_b(relu(conv_a(x))) + shortcut(x))`` with 3×3 SAME convolutions (the first one strided where the
block downsamples) and a 1×1 strided ``shortcut`` convolution where the shape changes (identity otherwise).
Layer names: ``blockN`` (the block's output, after the ReLU), ``blockN_pre_relu`` (the sum), ``blockN_a`` /
``blockN_a_pre_relu`` (the inner convolution), ``stem``.  ``block3`` is the layer compared with ``ShapesNet``'s
``mixed3b``: a 16×16 map, receptive field 39 px (mixed3b: 29–45 px).  Input: RGB in ``[0, 1]``.

Example::

    >>> import torch
    >>> from mechscope.zoo.organisms.shapes_resnet import ShapesResNet
    >>> net = ShapesResNet().eval()
    >>> net(torch.rand(2, 3, 64, 64)).shape, net.layer_table["block3"].channels
    (torch.Size([2, 61]), 64)
"""

from __future__ import annotations

import torch
from torch import nn

from mechscope.units import LayerInfo
from mechscope.zoo.inceptionv1 import ConvReLU, SameConv2d, add_conv_layers
from mechscope.zoo.organisms.shapes_net import INPUT_MEAN, INPUT_STD, NUM_LOGITS, add_batchnorm

STEM = (3, 24)
BLOCKS: dict[str, tuple[int, int, int]] = {  # name: (c_in, c_out, stride)
    "block1": (24, 24, 1),
    "block2": (24, 64, 2),
    "block3": (64, 64, 1),
    "block4": (64, 96, 2),
}
COMPARE_LAYER = "block3"


class Add(nn.Module):
    """Sum of two tensors as a module, so that the pre-ReLU sum is a named, hookable layer."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class BasicBlock(nn.Module):
    """``relu(conv_b(relu(conv_a(x))) + shortcut(x))``; ``[batch, c_in, H, W] -> [batch, c_out, H/s, W/s]``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.a = ConvReLU(c_in, c_out, 3, stride)
        self.conv_b = SameConv2d(c_out, c_out, 3)
        self.shortcut = SameConv2d(c_in, c_out, 1, stride) if (stride != 1 or c_in != c_out) else nn.Identity()
        self.add = Add()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.add(self.conv_b(self.a(x)), self.shortcut(x)))


def _layer_table() -> dict[str, LayerInfo]:
    t: dict[str, LayerInfo] = {}
    add_conv_layers(t, "stem", "stem", STEM[1])
    for name, (_, c_out, _) in BLOCKS.items():
        add_conv_layers(t, f"{name}_a", f"{name}.a", c_out)
        t[f"{name}_pre_relu"] = LayerInfo(f"{name}.add", c_out, pre_relu=True)
        t[name] = LayerInfo(f"{name}.relu", c_out)
    t["avgpool"] = LayerInfo("avgpool", BLOCKS["block4"][1])
    t["logits"] = LayerInfo("logits", NUM_LOGITS)
    return t


class ShapesResNet(nn.Module):
    """Small ResNet.  Input ``[batch, 3, H, W]`` RGB in [0, 1]; output ``[batch, 61]`` logits."""

    def __init__(self, batchnorm: bool = False) -> None:
        super().__init__()
        self.stem = ConvReLU(*STEM, 3, 2)
        for name, (c_in, c_out, stride) in BLOCKS.items():
            setattr(self, name, BasicBlock(c_in, c_out, stride))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.logits = nn.Linear(BLOCKS["block4"][1], NUM_LOGITS)
        self.layer_table = _layer_table()
        if batchnorm:
            add_batchnorm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem((x - INPUT_MEAN) / INPUT_STD)
        for name in BLOCKS:
            x = getattr(self, name)(x)
        return self.logits(self.avgpool(x).flatten(1))
