"""The "branched" organisms: a small conv net whose first layer is shared RGB but whose later layers are split
into ``groups`` branches, AlexNet-style (Branch Specialization's first-layer experiment).

Layout (at a 64-px input): ``conv1`` 7×7 stride 2 (24 ch, 32×32; every unit reads all three colour channels)
→ ``pool1`` (max 2, 16×16) → ``conv2`` 3×3 (48 ch, grouped) → ``pool2`` (max 2, 8×8) → ``conv3`` 3×3 (96 ch,
grouped) → ``avgpool`` → ``logits`` (61: the shapes world's four tasks, ``TASKS`` order, as ShapesNet).
``conv2`` and ``conv3`` are grouped convolutions with ``groups`` ∈ {1, 2, 3}: branch ``g`` reads only
``conv1`` channels ``g*24/groups … (g+1)*24/groups - 1`` and writes only its own share of ``conv2``/``conv3``;
the branches meet only in the linear head (as AlexNet's two GPUs met in the fully connected layers).
``conv2`` and ``conv3`` are followed by batch norm (per channel, so it never mixes branches; kept in the
shipped model, running statistics in eval mode); ``conv1`` has none, so its kernels read directly.
``groups=1`` is the unbranched control.  Input: RGB in ``[0, 1]``, ``[batch, 3, H, W]``.

Example::

    >>> import torch
    >>> from mechscope.zoo.organisms.branched_net import BranchedNet
    >>> net = BranchedNet(groups=3).eval()
    >>> net(torch.rand(2, 3, 64, 64)).shape, net.branch_channels("conv1", 1)
    (torch.Size([2, 61]), range(8, 16))
"""

from __future__ import annotations

import torch
from torch import nn

from mechscope.data.shapes import TASKS
from mechscope.errors import MechscopeError
from mechscope.units import LayerInfo

WIDTHS = {"conv1": 24, "conv2": 48, "conv3": 96}
KERNEL1, STRIDE1 = 7, 2
NUM_LOGITS = sum(TASKS.values())
INPUT_MEAN, INPUT_STD = 0.5, 0.25
GROUPS = (1, 2, 3)


class BranchedNet(nn.Module):
    """First layer shared, the rest in ``groups`` branches.  ``[batch, 3, H, W]`` -> ``[batch, 61]`` logits."""

    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        if groups not in GROUPS:
            raise MechscopeError(f"groups must be one of {GROUPS}, got {groups}")
        self.groups = groups
        w1, w2, w3 = WIDTHS.values()
        self.conv1 = nn.Conv2d(3, w1, KERNEL1, STRIDE1, padding=KERNEL1 // 2)
        self.conv1_relu = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(w1, w2, 3, padding=1, groups=groups)
        self.conv2_bn = nn.BatchNorm2d(w2)
        self.conv2_relu = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(w2, w3, 3, padding=1, groups=groups)
        self.conv3_bn = nn.BatchNorm2d(w3)
        self.conv3_relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.logits = nn.Linear(w3, NUM_LOGITS)
        self.layer_table = {
            "conv1_pre_relu": LayerInfo("conv1", w1, pre_relu=True), "conv1": LayerInfo("conv1_relu", w1),
            "pool1": LayerInfo("pool1", w1),
            "conv2_pre_relu": LayerInfo("conv2_bn", w2, pre_relu=True), "conv2": LayerInfo("conv2_relu", w2),
            "pool2": LayerInfo("pool2", w2),
            "conv3_pre_relu": LayerInfo("conv3_bn", w3, pre_relu=True), "conv3": LayerInfo("conv3_relu", w3),
            "avgpool": LayerInfo("avgpool", w3), "logits": LayerInfo("logits", NUM_LOGITS),
        }

    def branch_channels(self, layer: str, branch: int) -> range:
        """The channels of ``layer`` (``conv1``, ``conv2`` or ``conv3``) that belong to ``branch``."""
        if layer not in WIDTHS or not 0 <= branch < self.groups:
            raise MechscopeError(f"no branch {branch} of layer {layer!r} (layers {list(WIDTHS)}, "
                                 f"branches 0..{self.groups - 1})")
        per = WIDTHS[layer] // self.groups
        return range(branch * per, (branch + 1) * per)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - INPUT_MEAN) / INPUT_STD
        x = self.pool1(self.conv1_relu(self.conv1(x)))
        x = self.pool2(self.conv2_relu(self.conv2_bn(self.conv2(x))))
        x = self.conv3_relu(self.conv3_bn(self.conv3(x)))
        return self.logits(self.avgpool(x).flatten(1))
