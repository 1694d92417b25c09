"""Names of layers, units and heads: one parser, one validator.

Syntax (the same everywhere: Python API, CLI, web app)::

    mixed3b                  a layer (InceptionV1's Lucid name, or any module path of an nn.Module)
    mixed3b_pre_relu         the same layer before its ReLU
    mixed3b:379              channel 379 of a layer (a "unit")
    mixed3b:379@7,7          that channel at spatial position x=7, y=7
    blocks.1.attn:4          head 4 of an attention layer (a layer whose last path component is ``attn``)
    1.4                      the same head, short form ``LAYER.HEAD`` (read as a head where a head is expected:
                             ``parse_head``; ``parse`` keeps it a module path, as nested ``nn.Sequential``s name them)
    mixed3b:379@7,7#neg_1    a feature-visualization label: a unit, ``#neg`` for an image that minimizes it and
                             ``#k`` / ``#neg_k`` for the k-th of several images (``VisLabel``)

As in Lucid, ``x`` indexes the first spatial axis of a ``[batch, channel, x, y]`` activation and ``y`` the second.

Models may declare their layers with a ``layer_table`` attribute (``dict[str, LayerInfo]``): declared names
then map to module paths and carry their width.  Any other ``nn.Module`` is addressed by module path.

Example::

    >>> from mechscope.units import parse
    >>> parse("mixed3b:379@7,7")
    Unit(layer='mixed3b', channel=379, position=(7, 7))
    >>> parse_head("1.4") == parse("blocks.1.attn:4"), parse_head("1.4").short
    (True, '1.4')
    >>> label = VisLabel.parse("mixed3b:379@7,7#neg_1")
    >>> label.negative, label.index, label.stem
    (True, 1, 'mixed3b_379_at_7_7_neg_1')

The patterns live once, here; ``search_grammar()`` hands the same ones to the web page's search box.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from mechscope.errors import MechscopeError, unknown_name


@dataclass(frozen=True)
class LayerInfo:
    """What a model declares about one of its layers.

    ``path`` is the module whose output is the layer; ``channels`` its width (dim 1 of the output);
    ``pre_relu`` marks taps before a ReLU; ``branch`` marks one branch of an inception (mixed) block.
    """

    path: str
    channels: int
    pre_relu: bool = False
    branch: bool = False


@dataclass(frozen=True)
class Layer:
    """A whole layer, e.g. ``mixed3b``."""

    layer: str

    def __str__(self) -> str:
        return self.layer


@dataclass(frozen=True)
class Unit:
    """One channel of a layer, optionally at one spatial position ``(x, y)``."""

    layer: str
    channel: int
    position: tuple[int, int] | None = None

    def __str__(self) -> str:
        pos = f"@{self.position[0]},{self.position[1]}" if self.position else ""
        return f"{self.layer}:{self.channel}{pos}"


@dataclass(frozen=True)
class Head:
    """One attention head, e.g. ``blocks.1.attn:4`` (short form ``1.4``)."""

    layer: str
    head: int

    def __str__(self) -> str:
        return f"{self.layer}:{self.head}"

    @classmethod
    def at(cls, layer: int, head: int) -> Head:
        """Head ``head`` of block ``layer``: ``Head.at(1, 4) == Head("blocks.1.attn", 4)``."""
        return cls(f"blocks.{layer}.attn", head)

    @property
    def layer_index(self) -> int:
        """The block number ``L`` of ``blocks.L.attn``; raises for a head of another layer naming."""
        m = _BLOCK_ATTN.match(self.layer)
        if m is None:
            raise MechscopeError(f"head {self}: its layer {self.layer!r} is not of the form 'blocks.L.attn'")
        return int(m["block"])

    @property
    def short(self) -> str:
        """``"L.H"``, the spelling of head tables and the transformer verbs (``blocks.1.attn:4`` -> ``"1.4"``)."""
        return f"{self.layer_index}.{self.head}"


Name = Layer | Unit | Head

# The grammar, written once: ``parse``, ``parse_head``, ``VisLabel.parse`` and ``search_grammar`` compile these.
# Only constructs that mean the same in Python's ``re`` and JavaScript's ``RegExp`` (``\w``: ASCII in JavaScript).
_LAYER = r"\w[\w.\-]*"
_UNIT = rf"(?P<layer>{_LAYER})(?::(?P<index>\d+)(?:@(?P<x>\d+),(?P<y>\d+))?)?"
_SHORT_HEAD = r"(?P<block>\d+)\.(?P<head>\d+)"
_LONG_HEAD = r"(?P<attn>(?:\w[\w.\-]*\.)?attn):(?P<index>\d+)"
_LABEL_SUFFIX = r"(?:#(?P<neg>neg)(?:_(?P<negk>\d+))?|#(?P<k>\d+))?"
_PATTERN = re.compile(rf"^{_UNIT}$")
_ATTN = re.compile(r"(^|\.)attn$")
_BLOCK_ATTN = re.compile(r"^blocks\.(?P<block>\d+)\.attn$")
_HEAD_PATTERN = re.compile(rf"^(?:{_SHORT_HEAD}|{_LONG_HEAD})$")
_LABEL_PATTERN = re.compile(rf"^(?P<unit>{_LAYER}:\d+(?:@\d+,\d+)?){_LABEL_SUFFIX}$")


def parse(name: str | Name) -> Name:
    """Parse a layer, unit or head name; names already parsed pass through.

    Raises ``MechscopeError`` with the expected syntax when ``name`` does not parse.
    """
    if isinstance(name, (Layer, Unit, Head)):
        return name
    if not isinstance(name, str):
        raise MechscopeError(f"a name must be a string such as 'mixed3b:379', not {type(name).__name__}")
    m = _PATTERN.match(name.strip())
    if m is None:
        raise MechscopeError(
            f"cannot parse name {name!r}: expected 'layer', 'layer:channel', 'layer:channel@x,y' "
            "(e.g. 'mixed3b', 'mixed3b:379', 'mixed3b:379@7,7') or 'blocks.1.attn:4' for a head"
        )
    layer, index = m["layer"], m["index"]
    if index is None:
        return Layer(layer)
    if _ATTN.search(layer):
        if m["x"] is not None:
            raise MechscopeError(f"a head name takes no position: {name!r}")
        return Head(layer, int(index))
    position = (int(m["x"]), int(m["y"])) if m["x"] is not None else None
    return Unit(layer, int(index), position)


def parse_head(name: str | Head) -> Head:
    """Parse a head: ``"blocks.1.attn:4"`` or its short form ``"1.4"`` (the same ``Head``)."""
    if isinstance(name, Head):
        return name
    m = _HEAD_PATTERN.match(name.strip()) if isinstance(name, str) else None
    if m is None:
        raise MechscopeError(f"cannot parse head {name!r}: expected LAYER.HEAD (e.g. '1.3') or 'blocks.1.attn:3'")
    if m["block"] is not None:
        return Head.at(int(m["block"]), int(m["head"]))
    return Head(m["attn"], int(m["index"]))


def file_stem(name: str | Name | VisLabel) -> str:
    """A file name for a unit or label: ``mixed3b:379@7,7#neg_1`` -> ``mixed3b_379_at_7_7_neg_1``."""
    return str(name).replace(":", "_").replace("@", "_at_").replace(",", "_").replace("#", "_")


@dataclass(frozen=True)
class VisLabel:
    """One image of a feature visualization: its ``unit``, whether it minimizes it (``negative``) and which of
    several images it is (``index``; ``None`` for the only one).  Spelled ``unit[#neg][#k]`` with ``#neg#k``
    written ``#neg_k``, e.g. ``mixed3b:379#neg_1``; ``stem`` is its file name without extension."""

    unit: Unit
    negative: bool = False
    index: int | None = None

    def __str__(self) -> str:
        if self.negative:
            return f"{self.unit}#neg" + (f"_{self.index}" if self.index is not None else "")
        return f"{self.unit}" + (f"#{self.index}" if self.index is not None else "")

    @property
    def stem(self) -> str:
        return file_stem(self)

    @classmethod
    def parse(cls, label: str | VisLabel) -> VisLabel:
        """The inverse of ``str``: ``VisLabel.parse(str(x)) == x``."""
        if isinstance(label, VisLabel):
            return label
        m = _LABEL_PATTERN.match(label.strip()) if isinstance(label, str) else None
        if m is None:
            raise MechscopeError(f"cannot parse label {label!r}: expected 'layer:channel[@x,y]' followed by nothing, "
                                 "'#neg', '#k' or '#neg_k' (e.g. 'mixed3b:379#neg_1')")
        index = m["negk"] if m["neg"] else m["k"]
        return cls(parse_unit(m["unit"]), bool(m["neg"]), int(index) if index is not None else None)


def _to_javascript(pattern: str) -> str:
    """Python's named groups ``(?P<n>...)`` spelled as JavaScript's ``(?<n>...)``; nothing else differs."""
    return pattern.replace("(?P<", "(?<")


def search_grammar() -> dict[str, str]:
    """The name grammar as JavaScript-compatible regular expression sources (anchored), for the web page's
    search box: ``layer``, ``unit`` (``layer:channel[@x,y]``), ``head`` (``L.H`` or ``...attn:H``), ``label``
    (a feature-visualization label) and ``name`` (anything ``parse`` reads).  Each is the pattern ``parse`` uses.

    Example::

        >>> import re
        >>> bool(re.match(search_grammar()["head"].replace("(?<", "(?P<"), "1.3"))
        True
    """
    unit_only = rf"{_LAYER}:\d+(?:@\d+,\d+)?"
    sources = {
        "layer": rf"^{_LAYER}$",
        "unit": rf"^{unit_only}$",
        "head": _HEAD_PATTERN.pattern,
        "label": _LABEL_PATTERN.pattern,
        "name": _PATTERN.pattern,
    }
    return {k: _to_javascript(v) for k, v in sources.items()}


def parse_layers(layers: str | Iterable[str], who: str, why: str) -> list[str]:
    """Whole-layer names for an analysis that covers every channel: one name or many, duplicates dropped in
    order; an empty list or a unit name is refused, the message saying ``who`` refuses it and ``why``."""
    names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    if not names:
        raise MechscopeError(f"{who} needs at least one layer name")
    for name in names:
        if not isinstance(parse(name), Layer):
            raise MechscopeError(f"{who} takes layer names such as 'mixed3b_pre_relu', not {name!r}: {why}")
    return names


def parse_unit(name: str | Unit) -> Unit:
    """Parse a name that must be a unit (``layer:channel[@x,y]``)."""
    parsed = parse(name)
    if not isinstance(parsed, Unit):
        raise MechscopeError(f"expected a unit such as 'mixed3b:379', got {str(parsed)!r}")
    return parsed


def layer_table(model: nn.Module) -> dict[str, LayerInfo]:
    """The layers a model declares (empty for a model that declares none)."""
    return dict(getattr(model, "layer_table", None) or {})


def layer_names(model: nn.Module) -> list[str]:
    """Every name that addresses a layer of ``model``: declared names first, then module paths."""
    declared = list(layer_table(model))
    paths = [p for p, _ in model.named_modules() if p and p not in declared]
    return declared + paths


def module_path(model: nn.Module, layer: str) -> str:
    """The module path behind a layer name; raises with the closest valid names when unknown."""
    table = layer_table(model)
    if layer in table:
        return table[layer].path
    try:
        model.get_submodule(layer)
    except AttributeError:
        valid = list(table) if table else [p for p, _ in model.named_modules() if p]
        raise unknown_name("layer", layer, valid, where=type(model).__name__) from None
    return layer


def layer_width(model: nn.Module, layer: str) -> int | None:
    """The number of channels of a layer, where it can be known without running the model."""
    table = layer_table(model)
    if layer in table:
        return table[layer].channels
    module = model.get_submodule(module_path(model, layer))
    for attr in ("out_channels", "out_features", "num_features", "embedding_dim"):
        if isinstance(getattr(module, attr, None), int):
            return getattr(module, attr)
    return None


def validate(model: nn.Module, name: str | Name, *, width: int | None = None) -> Name:
    """Parse ``name`` and check it against ``model``: the layer exists and the channel is in range.

    The range is checked against ``width`` when given (e.g. measured by ``capture.layer_shapes``), else against
    the width ``layer_width`` knows; a layer of unknown width is not range-checked here.
    """
    parsed = parse(name)
    module_path(model, parsed.layer)
    if isinstance(parsed, Unit):
        width = layer_width(model, parsed.layer) if width is None else width
        if width is not None and parsed.channel >= width:
            raise MechscopeError(
                f"channel {parsed.channel} is out of range for layer {parsed.layer!r}, which has {width} "
                f"channels (valid: 0..{width - 1})"
            )
    return parsed
