"""Branch specialization: where a kind of unit sits among an inception block's branches, and what the first
layer's weights are made of.

* ``colour_vs_grey(model, layer)`` shows every unit coloured centre-surround stimuli (``stimuli.centre_surround``:
  six saturated colours on each other, on grey, and grey on them) and the same stimuli turned grey (each pixel
  replaced by its channel mean, so a unit reading only luminance answers both alike), plus black/white/grey
  pairs; the response is read at the centre of the map and maximised over each set.  A unit is a **colour unit**
  when its colour response exceeds ``ratio`` times its grey response (and is positive).
* ``branch_specialization(model, block, flags)`` counts flagged units per branch of an inception block (the
  block's channels are the concatenation of ``<block>_1x1``, ``_3x3``, ``_5x5``, ``_pool_reduce``, widths from the
  model's ``layer_table``) and gives, per branch, the hypergeometric probability of seeing at least that many
  flagged units in a branch of that width if the flagged units were spread at random (``branch_split`` does
  the same for any list of widths).  Probabilities are computed exactly with ``math.comb``.
* ``first_layer_svd(conv_weight)`` is the SVD of a first layer's flattened weights ``[C_out, 3*kh*kw]``; per
  component, a **colour score** (share of its energy orthogonal to the grey direction ``(1,1,1)/√3``) and a
  **frequency score** (share of its 2-D DFT energy above half the Nyquist frequency, radially).

Example::

    >>> import torch
    >>> from mechscope.vision.families.branches import branch_split, first_layer_svd
    >>> s = branch_split({"a": 4, "b": 4}, [True] * 4 + [False] * 4)
    >>> s.counts, round(s.p_values[0], 4)
    ([4, 0], 0.0143)
    >>> grey = torch.ones(3, 4, 4) / 48 ** 0.5
    >>> svd = first_layer_svd(torch.stack([grey, 2 * grey]))
    >>> round(svd.colour[0], 6), round(svd.frequency[0], 6), round(float(svd.explained[0]), 6)
    (0.0, 0.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import nn

from mechscope.capture import as_map, capture
from mechscope.devices import eval_mode, placement
from mechscope.errors import MechscopeError
from mechscope.units import Unit, layer_table, layer_width, parse, validate
from mechscope.vision.families import stimuli

__all__ = ["colour_vs_grey", "ColourResponse", "colour_stimuli", "branch_specialization", "branch_split",
           "BranchSplit", "hypergeom_sf", "first_layer_svd", "FirstLayerSVD", "BRANCHES"]

BRANCHES = ("1x1", "3x3", "5x5", "pool_reduce")  # the order of an inception block's concatenated channels

_COLOURS = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]])
_GREYS = torch.tensor([0.0, 0.5, 1.0])


def colour_stimuli(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``(colour [N, 3, S, S], grey [M, 3, S, S])``: coloured centre-surround pairs, and their grey versions
    (per-pixel channel mean) plus every black/grey/white centre-surround pair."""
    pairs = [(c, s) for c in _COLOURS for s in _COLOURS if not torch.equal(c, s)]
    pairs += [(c, torch.full((3,), 0.5)) for c in _COLOURS] + [(torch.full((3,), 0.5), c) for c in _COLOURS]
    centre, surround = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    colour = stimuli.centre_surround(centre, surround, size=size)
    desat = colour.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    g = [(a, b) for a in _GREYS for b in _GREYS if a != b]
    bw = stimuli.centre_surround(torch.stack([a.expand(3) for a, _ in g]), torch.stack([b.expand(3) for _, b in g]),
                                 size=size)
    return colour, torch.cat([desat, bw]).contiguous()


@dataclass(frozen=True)
class ColourResponse:
    """Per unit of ``layer`` (``channels``): best response to coloured stimuli ``colour [C]`` and to grey ones
    ``grey [C]``, read at ``position``; ``is_colour [C]`` where ``colour > ratio * max(grey, 0)`` and
    ``colour > 0``."""

    layer: str
    channels: list[int]
    colour: torch.Tensor
    grey: torch.Tensor
    is_colour: torch.Tensor
    ratio: float
    position: tuple[int, int]

    def colour_units(self) -> list[int]:
        """Channel ids of the colour units."""
        return [c for c, f in zip(self.channels, self.is_colour.tolist()) if f]


@torch.no_grad()
def colour_vs_grey(model: nn.Module, layer: str, *, size: int = 64, ratio: float = 1.5,
                   batch_size: int = 128) -> ColourResponse:
    """Colour vs grey responses of every unit of ``layer`` (a layer name; ``"layer:n"`` for one unit), read
    at the centre of the layer's map; ``size`` is the model's input side in pixels."""
    if ratio <= 0:
        raise MechscopeError(f"ratio must be positive, got {ratio}")
    name = validate(model, layer)
    colour_x, grey_x = colour_stimuli(size)
    where = placement(model)
    images = torch.cat([colour_x, grey_x])
    with eval_mode(model):
        maps = torch.cat([as_map(capture(model, images[i:i + batch_size].to(**where), [name.layer])[name.layer],
                                 name.layer, "colour vs grey responses").float().cpu()
                          for i in range(0, len(images), batch_size)])
    x, y = maps.shape[-2] // 2, maps.shape[-1] // 2
    at = maps[:, :, x, y]  # [N, C]
    chans = [name.channel] if isinstance(name, Unit) else list(range(at.shape[1]))
    if chans[-1] >= at.shape[1]:
        raise MechscopeError(f"channel {chans[-1]} is out of range: {name.layer} has {at.shape[1]} channels")
    at = at[:, chans]
    colour, grey = at[:len(colour_x)].amax(0), at[len(colour_x):].amax(0)
    is_colour = (colour > ratio * grey.clamp_min(0)) & (colour > 0)
    return ColourResponse(name.layer, chans, colour, grey, is_colour, float(ratio), (x, y))


def hypergeom_sf(k: int, total: int, flagged: int, drawn: int) -> float:
    """P(X >= k) for X ~ Hypergeometric(population ``total``, ``flagged`` successes, ``drawn`` draws), exact."""
    if not (0 <= flagged <= total and 0 <= drawn <= total):
        raise MechscopeError(f"hypergeometric needs 0 <= flagged, drawn <= total; got total={total}, "
                             f"flagged={flagged}, drawn={drawn}")
    hi = min(flagged, drawn)
    num = sum(math.comb(flagged, i) * math.comb(total - flagged, drawn - i) for i in range(max(k, 0), hi + 1))
    return float(Fraction(num, math.comb(total, drawn)))


@dataclass(frozen=True)
class BranchSplit:
    """Flagged units per branch: ``branches`` (names), ``widths``, ``counts``, ``flagged`` (the total), and
    ``p_values`` — per branch, the chance of at least ``counts[i]`` flagged units in a random draw of
    ``widths[i]`` of the block's units (hypergeometric)."""

    block: str
    branches: list[str]
    widths: list[int]
    counts: list[int]
    flagged: int
    p_values: list[float]

    @property
    def shares(self) -> list[float]:
        """Share of each branch's units that are flagged."""
        return [c / w if w else 0.0 for c, w in zip(self.counts, self.widths)]

    def branch_of(self, channel: int) -> str:
        """The branch that block channel ``channel`` belongs to."""
        lo = 0
        for name, w in zip(self.branches, self.widths):
            if lo <= channel < lo + w:
                return name
            lo += w
        raise MechscopeError(f"channel {channel} is out of range for {self.block!r} ({sum(self.widths)} channels)")

    def as_dict(self) -> dict:
        """JSON-ready."""
        return {"block": self.block, "flagged": self.flagged, "branches": [
            {"branch": b, "width": w, "count": c, "p_value": p}
            for b, w, c, p in zip(self.branches, self.widths, self.counts, self.p_values)]}


def _flags(flags, width: int, block: str) -> list[bool]:
    if isinstance(flags, ColourResponse):
        if flags.layer != block or flags.channels != list(range(width)):
            raise MechscopeError(f"the colour responses are of {flags.layer!r} ({len(flags.channels)} channels), "
                                 f"not of all {width} channels of {block!r}")
        return [bool(f) for f in flags.is_colour.tolist()]
    if isinstance(flags, Mapping):
        out = [False] * width
        for key, value in flags.items():
            if isinstance(key, int):
                channel = key
            else:
                unit = parse(key)
                if not isinstance(unit, Unit) or unit.layer != block:
                    raise MechscopeError(f"flag key {key!r} is not a unit of {block!r} (use '{block}:n' or n)")
                channel = unit.channel
            if not 0 <= channel < width:
                raise MechscopeError(f"channel {channel} is out of range for {block!r}, which has {width} channels")
            out[channel] = bool(value)
        return out
    seq = [bool(f) for f in (flags.tolist() if isinstance(flags, torch.Tensor) else flags)]
    if len(seq) != width:
        raise MechscopeError(f"{len(seq)} flags given for {block!r}, which has {width} channels (one flag per "
                             "channel, in block order)")
    return seq


def branch_split(widths: Mapping[str, int] | Sequence[tuple[str, int]], flags, block: str = "block") -> BranchSplit:
    """Per-branch counts of ``flags`` (one bool per channel of the concatenation, a tensor, or a dict of
    channel / ``"block:n"`` -> bool) for branches of ``widths`` (name -> width, in concatenation order)."""
    items = list(widths.items()) if isinstance(widths, Mapping) else list(widths)
    if not items or any(w < 0 for _, w in items):
        raise MechscopeError(f"branch widths must be non-negative and non-empty, got {items}")
    total = sum(w for _, w in items)
    f = _flags(flags, total, block)
    k_all, counts, lo = sum(f), [], 0
    for _, w in items:
        counts.append(sum(f[lo:lo + w]))
        lo += w
    p = [hypergeom_sf(c, total, k_all, w) for c, (_, w) in zip(counts, items)]
    return BranchSplit(block, [n for n, _ in items], [w for _, w in items], counts, k_all, p)


def branch_specialization(model: nn.Module, block: str, flags) -> BranchSplit:
    """Per-branch counts of flagged units in the inception ``block`` (e.g. ``"mixed3a"``) of ``model``.

    ``flags``: one bool per channel of the block (a sequence or tensor ``[C]``), a dict ``{"mixed3a:5": True}``
    or ``{5: True}`` (missing channels unflagged), or a ``ColourResponse`` of the whole block.  Branch widths
    come from the model's ``layer_table`` (``<block>_1x1``, ``_3x3``, ``_5x5``, ``_pool_reduce``).
    """
    name = validate(model, block)
    if isinstance(name, Unit):
        raise MechscopeError(f"branch_specialization needs a block name like 'mixed3a', got the unit {block!r}")
    table = layer_table(model)
    missing = [f"{block}_{b}" for b in BRANCHES if f"{block}_{b}" not in table]
    if missing:
        raise MechscopeError(f"{block!r} is not an inception block of {type(model).__name__}: its layer_table "
                             f"declares no {missing}")
    widths = [(b, table[f"{block}_{b}"].channels) for b in BRANCHES]
    width = layer_width(model, block)
    if width is not None and width != sum(w for _, w in widths):
        raise MechscopeError(f"{block!r} has {width} channels but its branches {widths} add up to "
                             f"{sum(w for _, w in widths)}")
    return branch_split(widths, flags, block)


@dataclass(frozen=True)
class FirstLayerSVD:
    """SVD of first-layer weights: ``singular_values [K]``, ``explained [K]`` (share of the squared norm),
    ``components [K, 3, kh, kw]`` (unit norm, sign as the SVD gives it), ``colour [K]`` and ``frequency [K]``
    scores in ``[0, 1]``."""

    singular_values: torch.Tensor
    explained: torch.Tensor
    components: torch.Tensor
    colour: list[float]
    frequency: list[float]


def _colour_score(v: torch.Tensor) -> float:
    total = float((v ** 2).sum())
    grey = float((v.sum(0) ** 2).sum()) / 3.0  # energy along (1,1,1)/√3 at each pixel
    return max(0.0, 1.0 - grey / total) if total > 0 else 0.0


def _frequency_score(v: torch.Tensor) -> float:
    kh, kw = v.shape[-2:]
    energy = torch.fft.fft2(v).abs() ** 2  # [3, kh, kw]
    fy, fx = torch.fft.fftfreq(kh, dtype=v.dtype), torch.fft.fftfreq(kw, dtype=v.dtype)
    radial = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()  # cycles per pixel; Nyquist = 0.5
    total = float(energy.sum())
    return float(energy[:, radial > 0.25].sum()) / total if total > 0 else 0.0


def first_layer_svd(conv_weight: torch.Tensor) -> FirstLayerSVD:
    """SVD of ``conv_weight [C_out, 3, kh, kw]`` flattened to ``[C_out, 3*kh*kw]`` (not centred), with each
    component's colour and spatial-frequency score (see the module docstring)."""
    w = torch.as_tensor(conv_weight).detach().to(torch.float64).cpu()
    if w.dim() != 4 or w.shape[1] != 3:
        raise MechscopeError(f"first_layer_svd needs RGB first-layer weights [C_out, 3, kh, kw], got shape "
                             f"{tuple(w.shape)}")
    _, s, vh = torch.linalg.svd(w.flatten(1), full_matrices=False)
    comps = vh.reshape(-1, *w.shape[1:])
    energy = s ** 2
    explained = energy / energy.sum() if energy.sum() > 0 else torch.zeros_like(energy)
    return FirstLayerSVD(s, explained, comps, [_colour_score(c) for c in comps],
                         [_frequency_score(c) for c in comps])
