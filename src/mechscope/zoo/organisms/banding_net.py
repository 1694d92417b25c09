"""The "banding" organisms: a short stack of 3x3 convolutions with a selectable pooling head, for the Weight
Banding ablations (Petrov et al., Distill 2021) on the layout world (``mechscope.data.layout``).

Layout at a 32-px input: ``conv1`` 3x3 (16 ch, 32x32) → ``pool1`` 2x2 max (16x16) → ``conv2`` 3x3
(32, 16x16) → ``pool2`` 2x2 max (8x8) → ``conv3`` 3x3 (32, 8x8) → ``conv4`` 3x3 (32, 8x8) → head → ``logits``
(9: the layout world's tasks concatenated, ``TASKS`` order: place 2, horizon 4, kind 3; ``split_logits`` cuts them apart).
Every conv is followed by a ReLU (``convN`` is the post-ReLU layer, ``convN_pre_relu`` the convolution's output).
The head (``HEADS``):

* ``"avg"`` — global average pooling over y and x, then a linear layer (the architecture the paper banded);
* ``"avg_x"`` — average over x only, keeping the 8 rows, then a linear layer over ``32 * 8`` features;
* ``"max"`` — global max pooling over y and x, then a linear layer.

Input: RGB in [0, 1], ``[batch, 3, 32, 32]`` (``avg`` and ``max`` accept any size; ``avg_x`` needs 32 px).

Example::

    >>> import torch
    >>> from mechscope.zoo.organisms.banding_net import BandingNet
    >>> [BandingNet(head)(torch.rand(2, 3, 32, 32)).shape[1] for head in ("avg", "avg_x", "max")]
    [9, 9, 9]
    >>> sorted(BandingNet().layer_table)[:3]
    ['conv1', 'conv1_pre_relu', 'conv2']
"""

from __future__ import annotations

import torch
from torch import nn

from mechscope.data.layout import TASKS
from mechscope.errors import MechscopeError
from mechscope.units import LayerInfo

CONVS = {"conv1": (3, 16), "conv2": (16, 32), "conv3": (32, 32), "conv4": (32, 32)}
HEADS = ("avg", "avg_x", "max")
NUM_LOGITS = sum(TASKS.values())
ROWS = 8            # rows of conv4's map at 32 px (the avg_x head keeps them)
INPUT_MEAN, INPUT_STD = 0.5, 0.25
VARIANTS: dict[str, tuple[str, bool]] = {   # the bundled organisms: variant -> (head, data rotated 90 degrees)
    "gap": ("avg", False),
    "gap-rotated": ("avg", True),
    "avg-x": ("avg_x", False),
    "max": ("max", False),
}


def file_stem(variant: str) -> str:
    """``"gap-rotated"`` -> ``"banding_gap_rotated"`` (the bundled files' stem)."""
    return "banding_" + variant.replace("-", "_")


class BandingNet(nn.Module):
    """``[batch, 3, 32, 32]`` → ``[batch, 9]`` logits; ``head`` one of ``HEADS``."""

    def __init__(self, head: str = "avg") -> None:
        super().__init__()
        if head not in HEADS:
            raise MechscopeError(f"unknown head {head!r}; choose from {list(HEADS)}")
        self.head = head
        for name, (c_in, c_out) in CONVS.items():
            setattr(self, name, nn.Conv2d(c_in, c_out, 3, padding=1))
            setattr(self, f"{name}_relu", nn.ReLU())
        self.pool1, self.pool2 = nn.MaxPool2d(2), nn.MaxPool2d(2)
        width = CONVS["conv4"][1]
        self.logits = nn.Linear(width * ROWS if head == "avg_x" else width, NUM_LOGITS)
        self.layer_table = {}
        for name, (_, c_out) in CONVS.items():
            self.layer_table[f"{name}_pre_relu"] = LayerInfo(name, c_out, pre_relu=True)
            self.layer_table[name] = LayerInfo(f"{name}_relu", c_out)
        self.layer_table["logits"] = LayerInfo("logits", NUM_LOGITS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - INPUT_MEAN) / INPUT_STD
        x = self.pool1(self.conv1_relu(self.conv1(x)))
        x = self.pool2(self.conv2_relu(self.conv2(x)))
        x = self.conv4_relu(self.conv4(self.conv3_relu(self.conv3(x))))
        if self.head == "avg":
            x = x.mean((2, 3))
        elif self.head == "max":
            x = x.amax((2, 3))
        else:
            if x.shape[2] != ROWS:
                raise MechscopeError(f"the avg_x head needs a {ROWS}-row map (a 32-px input), got {x.shape[2]}")
            x = x.mean(3).flatten(1)
        return self.logits(x)


def split_logits(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """``[batch, 9]`` -> ``{task: [batch, classes]}`` in ``TASKS`` order."""
    return dict(zip(TASKS, logits.split(list(TASKS.values()), dim=1), strict=True))
