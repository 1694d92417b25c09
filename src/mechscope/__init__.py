"""mechscope: a microscope for the inside of neural networks.

The flat public namespace: re-exports only, no work at import.

Example::

    >>> import torch, mechscope
    >>> model = mechscope.load("inceptionv1", weights="random", seed=0)
    >>> mechscope.capture(model, torch.rand(1, 3, 224, 224), "conv2d2")["conv2d2"].shape
    torch.Size([1, 192, 56, 56])
"""

from mechscope.capture import capture
from mechscope.errors import MechscopeError, UnknownNameError, WeightsError
from mechscope.units import Head, Layer, LayerInfo, Unit, layer_names, parse, validate
from mechscope.zoo.registry import ModelCard, cards, get_card, load

__version__ = "0.1.0"

__all__ = [
    "capture",
    "MechscopeError",
    "UnknownNameError",
    "WeightsError",
    "Head",
    "Layer",
    "LayerInfo",
    "Unit",
    "layer_names",
    "parse",
    "validate",
    "ModelCard",
    "cards",
    "get_card",
    "load",
]
