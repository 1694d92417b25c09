"""The "shapes-vgg" organism: a plain VGG-style stack of 3×3 convolutions and max-pools for the shapes world, a
second architecture for universality (``mechscope train shapes --arch vgg``).

Layout (at a 64-px input): ``conv1_1`` (16 ch, 64×64) → ``pool1`` (32×32) → ``conv2_1``, ``conv2_2`` (32) →
``pool2`` (16×16) → ``conv3_1``, ``conv3_2`` (96) → ``pool3`` (8×8) → ``conv4_1`` (128) → ``avgpool``
→ ``logits`` (61: the four tasks of the shapes world, ``split_logits`` order, as ``ShapesNet``).  Every
convolution is 3×3 stride 1 with SAME padding and a ReLU; pools are 2×2 stride 2.  ``conv3_2`` is the layer
compared with ``ShapesNet``'s ``mixed3b``: a 16×16 map, receptive field 30 px (mixed3b: 16×16, 29–45 px
through its 3×3 and 5×5 paths).  Each ``convN_M`` has a ``convN_M_pre_relu`` tap.  Input: RGB in ``[0, 1]``.

Example::

    >>> import torch
    >>> from mechscope.zoo.organisms.shapes_vgg import ShapesVGG
    >>> net = ShapesVGG().eval()
    >>> net(torch.rand(2, 3, 64, 64)).shape, net.layer_table["conv3_2"].channels
    (torch.Size([2, 61]), 96)
"""

from __future__ import annotations

import torch
from torch import nn

from mechscope.units import LayerInfo
from mechscope.zoo.inceptionv1 import ConvReLU, add_conv_layers
from mechscope.zoo.organisms.shapes_net import INPUT_MEAN, INPUT_STD, NUM_LOGITS, add_batchnorm

# name: (c_in, c_out); a pool follows the last conv of each stage but the last
STAGES: tuple[dict[str, tuple[int, int]], ...] = (
    {"conv1_1": (3, 16)},
    {"conv2_1": (16, 32), "conv2_2": (32, 32)},
    {"conv3_1": (32, 96), "conv3_2": (96, 96)},
    {"conv4_1": (96, 128)},
)
COMPARE_LAYER = "conv3_2"


def _layer_table() -> dict[str, LayerInfo]:
    t: dict[str, LayerInfo] = {}
    for i, stage in enumerate(STAGES, start=1):
        for name, (_, c_out) in stage.items():
            add_conv_layers(t, name, name, c_out)
        if i < len(STAGES):
            t[f"pool{i}"] = LayerInfo(f"pool{i}", c_out)
    t["avgpool"] = LayerInfo("avgpool", STAGES[-1][list(STAGES[-1])[-1]][1])
    t["logits"] = LayerInfo("logits", NUM_LOGITS)
    return t


class ShapesVGG(nn.Module):
    """Plain VGG-style net.  Input ``[batch, 3, H, W]`` RGB in [0, 1]; output ``[batch, 61]`` logits."""

    def __init__(self, batchnorm: bool = False) -> None:
        super().__init__()
        self.order: list[str] = []
        for i, stage in enumerate(STAGES, start=1):
            for name, (c_in, c_out) in stage.items():
                setattr(self, name, ConvReLU(c_in, c_out, 3))
                self.order.append(name)
            if i < len(STAGES):
                setattr(self, f"pool{i}", nn.MaxPool2d(2, 2))
                self.order.append(f"pool{i}")
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.logits = nn.Linear(STAGES[-1]["conv4_1"][1], NUM_LOGITS)
        self.layer_table = _layer_table()
        if batchnorm:
            add_batchnorm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - INPUT_MEAN) / INPUT_STD
        for name in self.order:
            x = getattr(self, name)(x)
        return self.logits(self.avgpool(x).flatten(1))
