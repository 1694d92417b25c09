"""The "shapes" organism: a small InceptionV1 for 64-px images of the shapes world, with InceptionV1's names.

Layout (at a 64-px input): ``conv2d0`` 5×5 stride 2 (32 ch, 32×32) → ``conv2d1`` 1×1 (32) → ``conv2d2`` 3×3 (64)
→ ``maxpool1`` (16×16) → ``mixed3a`` (128) → ``mixed3b`` (208) → ``maxpool4`` (8×8) → ``mixed4a`` (224) →
``mixed4b`` (256) → ``avgpool0`` → ``softmax2_pre_activation`` (61 logits: the four tasks of the shapes world
concatenated, ``TASKS`` order: shape 10, curve 40, boundary 9, colour 2; ``split_logits`` cuts them apart).
The blocks are InceptionV1's own ``ConvReLU`` / ``Mixed`` modules, so every name Lucid gives InceptionV1
(``mixed3b``, ``mixed3b_pre_relu``, ``mixed3b_5x5_bottleneck``, ``conv2d2_pre_relu``…) means the same here and
every analysis runs on both models unchanged.  Input: RGB in ``[0, 1]``, ``[batch, 3, 64, 64]`` (any size works;
the heads pool globally).

Training uses batch normalisation after every convolution (``ShapesNet(batchnorm=True)``); ``fold_batchnorm``
folds it into the convolutions afterwards, so the shipped model is a plain conv net whose weights read directly.

Example::

    >>> import torch
    >>> from mechscope.zoo.organisms.shapes_net import ShapesNet, split_logits
    >>> net = ShapesNet().eval()
    >>> logits = net(torch.rand(2, 3, 64, 64))
    >>> logits.shape, {k: v.shape[1] for k, v in split_logits(logits).items()}
    (torch.Size([2, 61]), {'shape': 10, 'curve': 40, 'boundary': 9, 'colour': 2})
    >>> b = net.forward_until(torch.rand(2, 3, 64, 64), "mixed3b")          # split the network at a stage
    >>> b.shape, net.forward_from("mixed3b", b).shape
    (torch.Size([2, 208, 16, 16]), torch.Size([2, 61]))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mechscope.data.shapes import IGNORE, TASKS
from mechscope.errors import MechscopeError
from mechscope.units import LayerInfo
from mechscope.zoo.inceptionv1 import (ConvReLU, Mixed, SameConv2d, SameMaxPool2d, add_conv_layers,
                                        add_mixed_layers)

STEM = {"conv2d0": (3, 32, 5, 2), "conv2d1": (32, 32, 1, 1), "conv2d2": (32, 64, 3, 1)}
MIXED = {  # c_in, 1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool reduce
    "mixed3a": (64, 32, 48, 64, 8, 16, 16),
    "mixed3b": (128, 48, 64, 96, 16, 32, 32),
    "mixed4a": (208, 64, 64, 96, 16, 32, 32),
    "mixed4b": (224, 64, 80, 128, 16, 32, 32),
}
NUM_LOGITS = sum(TASKS.values())
# The top-level stages in forward order: ``forward_until`` / ``forward_from`` split the network at any of them.
STAGES = ("conv2d0", "conv2d1", "conv2d2", "maxpool1", "mixed3a", "mixed3b", "maxpool4", "mixed4a", "mixed4b")
INPUT_MEAN, INPUT_STD = 0.5, 0.25


def mixed_width(widths: tuple[int, ...]) -> int:
    """The output channels of a mixed block ``(c_in, 1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool)``."""
    _, c1, _, c3, _, c5, cp = widths
    return c1 + c3 + c5 + cp


def _width(name: str) -> int:
    return mixed_width(MIXED[name])


def trunk_layer_table(stem: dict[str, tuple[int, ...]], mixed: dict[str, tuple[int, ...]]) -> dict[str, LayerInfo]:
    """The layer table of a ShapesNet-style trunk (``stem`` convolutions, ``maxpool1``, ``mixed`` blocks with
    ``maxpool4`` after ``mixed3b``, ``avgpool0``): every name Lucid gives these InceptionV1 layers."""
    t: dict[str, LayerInfo] = {}
    for name, (_, c_out, _, _) in stem.items():
        add_conv_layers(t, name, name, c_out)
    t["maxpool1"] = LayerInfo("maxpool1", stem["conv2d2"][1])
    for name, widths in mixed.items():
        add_mixed_layers(t, name, widths)
        if name == "mixed3b":
            t["maxpool4"] = LayerInfo("maxpool4", mixed_width(widths))
    t["avgpool0"] = LayerInfo("avgpool0", mixed_width(mixed["mixed4b"]))
    return t


def add_trunk(net: nn.Module, stem: dict[str, tuple[int, ...]], mixed: dict[str, tuple[int, ...]]) -> None:
    """Give ``net`` a ShapesNet-style trunk's modules in forward order (so a seeded build initialises them in the
    same order): ``stem`` convolutions, ``maxpool1``, mixed3a/3b, ``maxpool4``, mixed4a/4b, ``avgpool0``."""
    for name, (c_in, c_out, k, stride) in stem.items():
        setattr(net, name, ConvReLU(c_in, c_out, k, stride))
    net.maxpool1 = SameMaxPool2d(3, 2)
    net.mixed3a = Mixed(*mixed["mixed3a"])
    net.mixed3b = Mixed(*mixed["mixed3b"])
    net.maxpool4 = SameMaxPool2d(3, 2)
    net.mixed4a = Mixed(*mixed["mixed4a"])
    net.mixed4b = Mixed(*mixed["mixed4b"])
    net.avgpool0 = nn.AdaptiveAvgPool2d(1)


def _layer_table() -> dict[str, LayerInfo]:
    t = trunk_layer_table(STEM, MIXED)
    t["softmax2_pre_activation"] = LayerInfo("softmax2_pre_activation", NUM_LOGITS)
    return t


class ConvBN(nn.Sequential):
    """Convolution + batch norm used while training; ``fold_batchnorm`` turns it into one convolution."""

    def __init__(self, conv: SameConv2d) -> None:
        super().__init__(conv, nn.BatchNorm2d(conv.out_channels))


class ShapesNet(nn.Module):
    """The shapes organism.  Input ``[batch, 3, H, W]`` RGB in [0, 1]; output ``[batch, 61]`` logits."""

    stages = STAGES

    def __init__(self, batchnorm: bool = False) -> None:
        super().__init__()
        add_trunk(self, STEM, MIXED)
        self.softmax2_pre_activation = nn.Linear(_width("mixed4b"), NUM_LOGITS)
        self.layer_table = _layer_table()
        if batchnorm:
            for module in list(self.modules()):
                if isinstance(module, ConvReLU):
                    module.conv = ConvBN(module.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from("input", x)

    def forward_until(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """The output of the stage ``layer`` (one of ``STAGES``) for images ``x`` ``[B, 3, H, W]``."""
        end = _stage_index(layer)
        x = (x - INPUT_MEAN) / INPUT_STD
        for name in STAGES[:end + 1]:
            x = getattr(self, name)(x)
        return x

    def forward_from(self, layer: str, act: torch.Tensor) -> torch.Tensor:
        """The logits ``[B, 61]`` from ``act``, the output of stage ``layer`` (or ``"input"``: images): the
        layers after it only.  ``forward_from(layer, forward_until(x, layer)) == forward(x)``; an ablation
        that changes one stage reruns only what follows it."""
        if layer == "input":
            act, start = (act - INPUT_MEAN) / INPUT_STD, 0
        else:
            start = _stage_index(layer) + 1
        for name in STAGES[start:]:
            act = getattr(self, name)(act)
        return self.softmax2_pre_activation(self.avgpool0(act).flatten(1))


def _stage_index(layer: str) -> int:
    if layer not in STAGES:
        raise MechscopeError(f"{layer!r} is not a stage of ShapesNet; the stages (in order) are {list(STAGES)}")
    return STAGES.index(layer)


def split_logits(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """``[batch, 61]`` -> ``{task: [batch, classes]}`` in ``TASKS`` order."""
    return dict(zip(TASKS, logits.split(list(TASKS.values()), dim=1), strict=True))


def task_accuracy(logits: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """Accuracy of each task (``TASKS`` order) from ``[batch, 61]`` logits, over the items where the task
    applies (label ``!= IGNORE``); 0.0 for a task that applies to none."""
    acc = {}
    for task, out in split_logits(logits).items():
        valid = labels[task] != IGNORE
        acc[task] = float((out.argmax(1)[valid] == labels[task][valid]).double().mean()) if valid.any() else 0.0
    return acc


def add_batchnorm(model: nn.Module) -> nn.Module:
    """Wrap every ``SameConv2d`` of ``model`` in a ``ConvBN`` (in place, for training; returns ``model``)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SameConv2d) and not isinstance(parent, ConvBN):
                setattr(parent, name, ConvBN(child))
    return model


@torch.no_grad()
def fold_batchnorm(model: nn.Module, build: Callable[[], nn.Module] | None = None) -> nn.Module:
    """A copy of ``model`` (a ``ShapesNet`` or any organism built by ``type(model)(batchnorm=False)``, or by
    ``build()`` when given) without batch norm: each ``ConvBN`` replaced by one convolution computing the same
    function in eval mode (``w' = w * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``);
    other weights copied."""
    folded = build() if build is not None else type(model)(batchnorm=False)
    state = {}
    inside_bn = []
    for name, module in model.named_modules():
        if isinstance(module, ConvBN):
            inside_bn.append(f"{name}.")
            conv, bn = module[0], module[1]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            state[f"{name}.weight"] = conv.weight * scale[:, None, None, None]
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            state[f"{name}.bias"] = (bias - bn.running_mean) * scale + bn.bias
    for key, value in model.state_dict().items():
        if not any(key.startswith(prefix) for prefix in inside_bn):
            state[key] = value
    folded.load_state_dict({k: v.detach().clone() for k, v in state.items()})
    return folded.eval()
