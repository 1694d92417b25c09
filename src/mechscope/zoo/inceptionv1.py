"""InceptionV1 (GoogLeNet) as used by Lucid and OpenAI Microscope: the "inception5h" graph.

Faithful to the original TensorFlow graph:

- input: RGB images in ``[0, 1]``, mapped inside the model to ``x * 255 - 117``;
- TensorFlow "SAME" padding, computed for the actual input size (convolutions pad with zeros, max-pools with
  ``-inf``), so any input size works (no forced resize to 224);
- local response normalisation with depth radius 5, bias 2, alpha 1e-4, beta 0.5, the same function as
  PyTorch's ``LocalResponseNorm(11, 0.0011, 0.5, 2.0)`` (PyTorch divides alpha by the window size; Lucent's port
  uses size 9 and k 1, which changes every activation after ``conv2d0``), computed faster (``LocalResponseNorm``);
- 1008 classes; widths conv2d0 64, conv2d1 64, conv2d2 192, mixed3a 256, mixed3b 480, mixed4a 508, mixed4b 512,
  mixed4c 512, mixed4d 528, mixed4e 832, mixed5a 832, mixed5b 1024.

One deviation, needed for variable input sizes: ``avgpool0`` averages globally (at 224 px it equals the
original 7x7 VALID average pool).  The auxiliary heads (softmax0/1) are not part of the model.

Every layer is readable by its Lucid name (``model.layer_table``): ``conv2d0``, ``conv2d0_pre_relu``,
``maxpool0``, ``localresponsenorm0``, ``mixed3a``, ``mixed3a_pre_relu`` (the concatenated pre-ReLU of the
block), and each branch (``mixed3a_1x1``, ``mixed3a_3x3_bottleneck``, ``mixed3a_3x3``, ``mixed3a_5x5_bottleneck``,
``mixed3a_5x5``, ``mixed3a_pool``, ``mixed3a_pool_reduce``, each also ``*_pre_relu``).

Example::

    >>> import torch, mechscope
    >>> model = mechscope.load("inceptionv1", weights="random").eval()
    >>> model(torch.rand(1, 3, 224, 224)).shape
    torch.Size([1, 1008])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mechscope.errors import WeightsError
from mechscope.units import LayerInfo
from mechscope.zoo.weights import check_state_dict

# name: (in, 1x1, 3x3_bottleneck, 3x3, 5x5_bottleneck, 5x5, pool_reduce)
MIXED: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "mixed3a": (192, 64, 96, 128, 16, 32, 32),
    "mixed3b": (256, 128, 128, 192, 32, 96, 64),
    "mixed4a": (480, 192, 96, 204, 16, 48, 64),
    "mixed4b": (508, 160, 112, 224, 24, 64, 64),
    "mixed4c": (512, 128, 128, 256, 24, 64, 64),
    "mixed4d": (512, 112, 144, 288, 32, 64, 64),
    "mixed4e": (528, 256, 160, 320, 32, 128, 128),
    "mixed5a": (832, 256, 160, 320, 48, 128, 128),
    "mixed5b": (832, 384, 192, 384, 48, 128, 128),
}
NUM_CLASSES = 1008
INPUT_MEAN = 117.0  # the graph's input is x * 255 - 117


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding (before, after) along one axis of length ``size``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: int, stride: int, value: float) -> torch.Tensor:
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" zero padding for any input size.

    With stride 1 and an odd kernel, SAME padding is symmetric and the convolution's own padding does it without
    a copy; strided convolutions pad explicitly (the extra pixel goes after, as in TensorFlow).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        symmetric = stride == 1 and kernel % 2 == 1
        super().__init__(c_in, c_out, kernel, stride, padding=kernel // 2 if symmetric else 0)
        self._explicit_pad = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._explicit_pad:
            x = _pad_same(x, self.kernel_size[0], self.stride[0], 0.0)
        return super().forward(x)


class SameMaxPool2d(nn.Module):
    """Max-pool with TensorFlow "SAME" padding (padded cells never win).

    Stride 1 with an odd kernel uses the pool's own padding (implicitly -inf); strided pools pad explicitly.
    """

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.kernel % 2 == 1:
            return F.max_pool2d(x, self.kernel, 1, padding=self.kernel // 2)
        return F.max_pool2d(_pad_same(x, self.kernel, self.stride, float("-inf")), self.kernel, self.stride)


class LocalResponseNorm(nn.Module):
    """TensorFlow's local response normalisation across channels, computed as a banded 1x1 convolution.

    ``out = x / (bias + alpha * sum_{|d| <= depth_radius} x[c + d] ** 2) ** beta`` -- the same function as PyTorch's
    ``nn.LocalResponseNorm(2 * depth_radius + 1, alpha * (2 * depth_radius + 1), beta, bias)``.  PyTorch computes
    the window sum with ``avg_pool3d``, which took 44% of a feature-visualization step at mixed3b; a fixed 0/1 band
    matrix applied as a 1x1 convolution gives the exact same sums (at most 11 non-zero terms each) at a fraction
    of the cost.  The band is a non-persistent buffer: state dicts are unchanged.
    """

    def __init__(self, channels: int, depth_radius: int = 5, bias: float = 2.0, alpha: float = 1e-4,
                 beta: float = 0.5) -> None:
        super().__init__()
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta
        idx = torch.arange(channels)
        band = ((idx[:, None] - idx[None, :]).abs() <= depth_radius).float()
        self.register_buffer("band", band[:, :, None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        denominator = self.bias + self.alpha * F.conv2d(x * x, self.band)
        return x * (denominator.rsqrt() if self.beta == 0.5 else denominator.pow(-self.beta))


class ConvReLU(nn.Module):
    """A SAME convolution (``.conv``, the ``*_pre_relu`` tap) followed by ``.relu``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = SameConv2d(c_in, c_out, kernel, stride)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class Concat(nn.Module):
    """Channel concatenation as a module, so that the result is a named, hookable layer."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class Mixed(nn.Module):
    """An inception block: 1x1, 3x3 (after a 1x1 bottleneck), 5x5 (after a bottleneck), max-pool + 1x1."""

    def __init__(self, c_in: int, c1: int, c3b: int, c3: int, c5b: int, c5: int, cp: int) -> None:
        super().__init__()
        self.b1x1 = ConvReLU(c_in, c1, 1)
        self.b3x3_bottleneck = ConvReLU(c_in, c3b, 1)
        self.b3x3 = ConvReLU(c3b, c3, 3)
        self.b5x5_bottleneck = ConvReLU(c_in, c5b, 1)
        self.b5x5 = ConvReLU(c5b, c5, 5)
        self.pool = SameMaxPool2d(3, 1)
        self.pool_reduce = ConvReLU(c_in, cp, 1)
        self.pre_relu = Concat()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p1 = self.b1x1.conv(x)
        p3 = self.b3x3.conv(self.b3x3_bottleneck(x))
        p5 = self.b5x5.conv(self.b5x5_bottleneck(x))
        pp = self.pool_reduce.conv(self.pool(x))
        self.pre_relu(p1, p3, p5, pp)
        return torch.cat([self.b1x1.relu(p1), self.b3x3.relu(p3), self.b5x5.relu(p5), self.pool_reduce.relu(pp)], 1)


def add_conv_layers(t: dict[str, LayerInfo], name: str, path: str, width: int, branch: bool = False) -> None:
    """Declare a ``ConvReLU`` at ``path``: ``<name>_pre_relu`` (its ``.conv``) and ``<name>`` (its ``.relu``)."""
    t[f"{name}_pre_relu"] = LayerInfo(f"{path}.conv", width, pre_relu=True, branch=branch)
    t[name] = LayerInfo(f"{path}.relu", width, branch=branch)


def add_mixed_layers(t: dict[str, LayerInfo], name: str, widths: tuple[int, ...]) -> int:
    """Declare a ``Mixed`` block (``widths = (c_in, 1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool
    reduce)``) with Lucid's branch names; returns the block's output width."""
    c_in, c1, c3b, c3, c5b, c5, cp = widths
    add_conv_layers(t, f"{name}_1x1", f"{name}.b1x1", c1, branch=True)
    add_conv_layers(t, f"{name}_3x3_bottleneck", f"{name}.b3x3_bottleneck", c3b, branch=True)
    add_conv_layers(t, f"{name}_3x3", f"{name}.b3x3", c3, branch=True)
    add_conv_layers(t, f"{name}_5x5_bottleneck", f"{name}.b5x5_bottleneck", c5b, branch=True)
    add_conv_layers(t, f"{name}_5x5", f"{name}.b5x5", c5, branch=True)
    t[f"{name}_pool"] = LayerInfo(f"{name}.pool", c_in, branch=True)
    add_conv_layers(t, f"{name}_pool_reduce", f"{name}.pool_reduce", cp, branch=True)
    width = c1 + c3 + c5 + cp
    t[f"{name}_pre_relu"] = LayerInfo(f"{name}.pre_relu", width, pre_relu=True)
    t[name] = LayerInfo(name, width)
    return width


def _layer_table(num_classes: int) -> dict[str, LayerInfo]:
    """Lucid's layer names -> module paths and widths, in forward order."""
    t: dict[str, LayerInfo] = {}
    add_conv_layers(t, "conv2d0", "conv2d0", 64)
    t["maxpool0"] = LayerInfo("maxpool0", 64)
    t["localresponsenorm0"] = LayerInfo("localresponsenorm0", 64)
    add_conv_layers(t, "conv2d1", "conv2d1", 64)
    add_conv_layers(t, "conv2d2", "conv2d2", 192)
    t["localresponsenorm1"] = LayerInfo("localresponsenorm1", 192)
    t["maxpool1"] = LayerInfo("maxpool1", 192)
    for name, widths in MIXED.items():
        width = add_mixed_layers(t, name, widths)
        if name == "mixed3b":
            t["maxpool4"] = LayerInfo("maxpool4", width)
        if name == "mixed4e":
            t["maxpool10"] = LayerInfo("maxpool10", width)
    t["avgpool0"] = LayerInfo("avgpool0", 1024)
    t["softmax2_pre_activation"] = LayerInfo("softmax2_pre_activation", num_classes)
    return t


class InceptionV1(nn.Module):
    """InceptionV1 / GoogLeNet, inception5h graph.  Input ``[batch, 3, H, W]`` RGB in [0, 1]; output logits
    ``[batch, 1008]``."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.conv2d0 = ConvReLU(3, 64, 7, stride=2)
        self.maxpool0 = SameMaxPool2d(3, 2)
        self.localresponsenorm0 = LocalResponseNorm(64)
        self.conv2d1 = ConvReLU(64, 64, 1)
        self.conv2d2 = ConvReLU(64, 192, 3)
        self.localresponsenorm1 = LocalResponseNorm(192)
        self.maxpool1 = SameMaxPool2d(3, 2)
        self.mixed3a = Mixed(*MIXED["mixed3a"])
        self.mixed3b = Mixed(*MIXED["mixed3b"])
        self.maxpool4 = SameMaxPool2d(3, 2)
        self.mixed4a = Mixed(*MIXED["mixed4a"])
        self.mixed4b = Mixed(*MIXED["mixed4b"])
        self.mixed4c = Mixed(*MIXED["mixed4c"])
        self.mixed4d = Mixed(*MIXED["mixed4d"])
        self.mixed4e = Mixed(*MIXED["mixed4e"])
        self.maxpool10 = SameMaxPool2d(3, 2)
        self.mixed5a = Mixed(*MIXED["mixed5a"])
        self.mixed5b = Mixed(*MIXED["mixed5b"])
        self.avgpool0 = nn.AdaptiveAvgPool2d(1)
        self.softmax2_pre_activation = nn.Linear(1024, num_classes)
        self.layer_table = _layer_table(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 255.0 - INPUT_MEAN
        x = self.localresponsenorm0(self.maxpool0(self.conv2d0(x)))
        x = self.maxpool1(self.localresponsenorm1(self.conv2d2(self.conv2d1(x))))
        x = self.maxpool4(self.mixed3b(self.mixed3a(x)))
        x = self.mixed4e(self.mixed4d(self.mixed4c(self.mixed4b(self.mixed4a(x)))))
        x = self.mixed5b(self.mixed5a(self.maxpool10(x)))
        return self.softmax2_pre_activation(self.avgpool0(x).flatten(1))


# ---- the public inception5h.pth layout (ProGamerGov's conversion, used by Lucent) ----------------------------
# Every convolution is stored as "<lucid layer name>_pre_relu_conv.{weight,bias}", the classifier as
# "softmax2_pre_activation_matmul.{weight,bias}"; tensor shapes equal PyTorch's Conv2d / Linear shapes.
_LUCENT_CONV_SUFFIX = "_conv"
_LUCENT_CLASSIFIER = ("softmax2_pre_activation_matmul", "softmax2_pre_activation")


def to_lucent_state_dict(state_dict: dict[str, torch.Tensor], model: InceptionV1) -> dict[str, torch.Tensor]:
    """Our state dict -> the ``inception5h.pth`` key layout (e.g. ``mixed3a_1x1_pre_relu_conv.weight``)."""
    conv_names = {info.path: name for name, info in model.layer_table.items() if info.path.endswith(".conv")}
    out = {}
    for key, value in state_dict.items():
        stem, _, param = key.rpartition(".")
        if stem in conv_names:
            out[f"{conv_names[stem]}{_LUCENT_CONV_SUFFIX}.{param}"] = value
        elif stem == _LUCENT_CLASSIFIER[1]:
            out[f"{_LUCENT_CLASSIFIER[0]}.{param}"] = value
        else:
            raise WeightsError(f"no inception5h.pth name for key {key!r}")
    return out


def from_lucent_state_dict(
    state_dict: dict[str, torch.Tensor], model: InceptionV1, source: str = "state dict"
) -> dict[str, torch.Tensor]:
    """The ``inception5h.pth`` key layout -> our state dict, after checking every key and shape.

    A file with missing or unexpected keys or wrong shapes is refused with the offending keys in the file's own
    names.
    """
    expected = to_lucent_state_dict(model.state_dict(), model)
    check_state_dict(state_dict, expected, source=source)
    paths = {name: info.path for name, info in model.layer_table.items()}
    out = {}
    for key, value in state_dict.items():
        stem, _, param = key.rpartition(".")
        if stem == _LUCENT_CLASSIFIER[0]:
            out[f"{_LUCENT_CLASSIFIER[1]}.{param}"] = value
        else:
            out[f"{paths[stem.removesuffix(_LUCENT_CONV_SUFFIX)]}.{param}"] = value
    return out


def convert_state_dict(
    state_dict: dict[str, torch.Tensor], model: InceptionV1, source: str = "state dict"
) -> dict[str, torch.Tensor]:
    """Accept either our own layout or the public ``inception5h.pth`` layout; return ours, checked."""
    if any(k.endswith("_pre_relu_conv.weight") for k in state_dict):
        return from_lucent_state_dict(state_dict, model, source)
    check_state_dict(state_dict, model.state_dict(), source=source)
    return state_dict
