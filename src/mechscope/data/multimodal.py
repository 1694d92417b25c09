"""The multimodal world: image-caption pairs of the shapes world, each concept shown as a picture, a sketch or
its written name.

(Just over 400 lines because sampling, rendering and captioning share the per-item randomness table.)

Every item is a pure function of ``(seed, index)`` (its own ``numpy`` generator, seeded by both and a salt that
keeps it apart from the shapes world's items); the pictures and sketches are drawn by the shapes world's
vectorised renderer (``data/shapes.py``, ``data/draw.py``), the words by Pillow's built-in scalable font
(``ImageFont.load_default(size=...)``), one small mask per image.

**Concepts** (``CONCEPTS``, from ``mechscope.data.concepts`` with the caption grammar, re-exported here): the
ten shape classes, seven named colours (``COLOURS``) and three superordinate groups of shapes (``GROUPS``):
*round* (disc, ring, spiral, arc), *pointed* (star, angle, polygon, cross) and *linear* (line, wave).

**Styles** (``STYLES``, drawn per item with ``MultimodalWorld.style_probs``):

* ``picture`` -- the shapes world's main shape, in a named colour, on one of its backgrounds;
* ``sketch`` -- the same shape as thin dark strokes on plain light paper, outline only: polygons and stars never
  filled, a disc as its contour with hatching, a ring as its two contours (so the two stay apart);
* ``word`` -- a concept's name (any of the twenty) written in a named colour, random size and position;
* ``picture+word`` -- a picture with its shape's name written on it.  ``render`` writes any other concept, or
  any text, instead: the typographic attack.  Its caption names the written word with probability
  ``MultimodalWorld.caption_names_label``; otherwise it describes the picture alone (a ``picture`` template), as
  the caption of a labelled object on the web often does.

**Captions** come from ``TEMPLATES`` (per style), one template per item (``concepts.py``: ``caption``,
``parse_caption``, ``concept_captions``, ``class_prompts``).  Sampling draws 1,000 64-px items in about a second
on one thread (Pillow's text included).

**Labels** (``MultimodalBatch``, ``[N]`` long tensors): ``style`` (index into ``STYLES``), ``shape`` (index into
``SHAPE_CLASSES``; -1 for ``word``), ``colour`` (index into ``COLOURS``; the ink's for words, -1 for sketches),
``word`` (the concept id written; ``NO_WORD = -1`` none, ``OTHER_TEXT = -2`` free text), ``caption_style`` (the
style whose template the caption uses: the item's own, or ``picture`` for a ``picture+word`` item whose caption does
not name its label) and ``template`` (an index into ``TEMPLATES`` of ``caption_style``).

Example::

    >>> from mechscope.data.multimodal import render, sample
    >>> batch = sample(range(4), seed=0)
    >>> batch.images.shape, len(batch.captions), batch.shape.shape
    (torch.Size([4, 3, 64, 64]), 4, torch.Size([4]))
    >>> bool((sample([2], seed=0).images == batch.images[2:3]).all())   # a pure function of (seed, index)
    True
    >>> attack = render("disc", "red", "picture+word", word="star", seed=0, indices=[7])
    >>> attack.texts, attack.captions      # this item's caption describes the picture, not its label
    (['star'], ['a red round shape'])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from mechscope.data import draw
from mechscope.data.concepts import (CONCEPT_NAMES, CONCEPTS, COLOURS, GROUPS, NO_WORD, OTHER_TEXT, PROMPTS, STYLES,
                                     TEMPLATES, _index, caption, class_prompts, concept_captions, concept_id, group_of,
                                     parse_caption)
from mechscope.data.shapes import BACKGROUNDS, SHAPE_CLASSES, WorldConfig, _background, _Draws, _hue, _shape_alpha
from mechscope.errors import MechscopeError

__all__ = [
    "STYLES", "COLOURS", "GROUPS", "CONCEPTS", "CONCEPT_NAMES", "TEMPLATES", "PROMPTS", "NO_WORD", "OTHER_TEXT",
    "MultimodalWorld", "MultimodalBatch", "sample", "render", "caption", "parse_caption", "concept_captions",
    "class_prompts", "group_of", "concept_id", "MultimodalDataset",
]

# The named colours' hues in degrees on the shapes world's hue circle (0 red, 120 green, 240 blue); None = grey.
_HUE_DEG = (0.0, 32.0, 62.0, 125.0, 235.0, 290.0, None)

_SALT = 0x4D4D   # keeps (seed, index) of this world apart from the shapes world's
_N_UNIFORM = 48
_CHOICE_COLUMNS = 6  # style, shape, colour, word kind, template, word; rendering draws from the columns after them
_FIELDS = {"n4": (4, 4), "n8": (8, 8), "n16": (16, 16)}


@dataclass(frozen=True)
class MultimodalWorld:
    """Parameters of the world (pixel lengths on a 64-px canvas; scaled with ``size``).

    ``style_probs``: of ``STYLES``; ``word_kinds``: the probabilities that a ``word`` item writes a shape, a colour
    or a group name; ``font_px``: the font size range; ``hue_jitter``: degrees around each named colour's hue;
    ``caption_names_label``: the probability that a ``picture+word`` item's caption names the written word (1.0:
    always, the first ``shapes-clip`` recipe; otherwise the caption describes the picture alone)."""

    size: int = 64
    style_probs: tuple[float, float, float, float] = (0.35, 0.2, 0.3, 0.15)
    word_kinds: tuple[float, float, float] = (0.6, 0.25, 0.15)
    font_px: tuple[float, float] = (10.0, 20.0)
    shape_radius: tuple[float, float] = (11.0, 22.0)
    stroke_width: tuple[float, float] = (1.5, 3.5)
    sketch_width: tuple[float, float] = (0.9, 1.5)
    contrast: tuple[float, float] = (0.4, 0.6)
    hue_jitter: float = 8.0
    pixel_noise: float = 0.02
    backgrounds: tuple[str, ...] = BACKGROUNDS
    caption_names_label: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 16:
            raise MechscopeError(f"MultimodalWorld size must be an int >= 16 pixels, got {self.size!r}")
        for name, n in (("style_probs", len(STYLES)), ("word_kinds", 3)):
            p = getattr(self, name)
            if len(p) != n or min(p) < 0 or sum(p) <= 0:
                raise MechscopeError(f"MultimodalWorld.{name} needs {n} non-negative numbers with a positive sum, "
                                     f"got {p!r}")
        if not 0.0 <= float(self.caption_names_label) <= 1.0:
            raise MechscopeError("MultimodalWorld.caption_names_label is a probability in [0, 1], got "
                                 f"{self.caption_names_label!r}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MultimodalBatch:
    """``images [N, 3, S, S]`` in ``[0, 1]``, ``captions`` (N strings), and ``[N]`` long labels ``style``,
    ``shape``, ``colour``, ``word``, ``template``, ``caption_style`` (see the module docstring); ``texts`` holds
    what was written."""

    images: torch.Tensor
    captions: list[str]
    style: torch.Tensor
    shape: torch.Tensor
    colour: torch.Tensor
    word: torch.Tensor
    template: torch.Tensor
    texts: list[str | None] = field(default_factory=list)
    caption_style: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.captions)


# ------------------------------------------------------------------------------------------------ rendering


def _randomness(indices: Sequence[int], seed: int, size: int) -> dict[str, torch.Tensor]:
    fields = {k: np.empty((len(indices), *s), dtype=np.float32) for k, s in {**_FIELDS, "fine": (size, size),
                                                                             "pix": (size, size)}.items()}
    u = np.empty((len(indices), _N_UNIFORM))
    for row, index in enumerate(indices):
        rng = np.random.default_rng([int(seed), int(index), _SALT])
        u[row] = rng.random(_N_UNIFORM)
        for k in fields:
            fields[k][row] = rng.standard_normal(fields[k].shape[1:], dtype=np.float32)
    return {**{k: torch.from_numpy(v) for k, v in fields.items()}, "u": torch.from_numpy(u).float()}


def _named_colour(d: _Draws, colour: torch.Tensor, lum: torch.Tensor, jitter: float) -> torch.Tensor:
    """RGB ``[B, 3]`` of the named colours ``colour [B]`` at luminance ``lum [B]``."""
    hue = torch.tensor([h if h is not None else 0.0 for h in _HUE_DEG])[colour]
    sat = d(0.75, 1.0) * (colour != COLOURS.index("grey"))
    h = torch.deg2rad(hue + d(-jitter, jitter))
    return (lum[:, None] + 0.45 * sat[:, None] * _hue(h)).clamp(0, 1)


@functools.lru_cache(maxsize=64)
def _font(px: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=px)


def _text_alpha(texts: Sequence[str | None], size: int, font_u: torch.Tensor, x_u: torch.Tensor, y_u: torch.Tensor,
                font_px: tuple[float, float], labels: Sequence[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """Coverage ``[B, S, S]`` of each text (``None``: nothing), Pillow-rendered, at a random size and position
    that fit the canvas (a text too wide at its drawn size is drawn smaller), and of a label under it (a box one
    to two pixels larger, where ``labels[i]``)."""
    from PIL import Image, ImageDraw

    s = size / 64
    out = torch.zeros(len(texts), size, size)
    label = torch.zeros(len(texts), size, size)
    for i, text in enumerate(texts):
        if not text:
            continue
        px = int(round((font_px[0] + float(font_u[i]) * (font_px[1] - font_px[0])) * s))
        while True:
            left, top, right, bottom = _font(px).getbbox(text)
            if (right - left <= size - 4 * s and bottom - top <= size - 4 * s) or px <= 6:
                break
            px -= 1
        w, h = right - left, bottom - top
        x = 2 * s - left + float(x_u[i]) * max(0.0, size - 4 * s - w)
        y = 2 * s - top + float(y_u[i]) * max(0.0, size - 4 * s - h)
        mask = Image.new("L", (size, size))
        ImageDraw.Draw(mask).text((x, y), text, fill=255, font=_font(px))
        out[i] = torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0)
        if labels[i]:
            pad = max(1, round(1.5 * s))
            x0, y0 = int(x + left) - pad, int(y + top) - pad
            label[i, max(0, y0):y0 + h + 2 * pad + 1, max(0, x0):x0 + w + 2 * pad + 1] = 1.0
    return out, label


def _draw(indices: Sequence[int], seed: int, world: MultimodalWorld, style: torch.Tensor, shape: torch.Tensor,
          colour: torch.Tensor, texts: Sequence[str | None], r: dict[str, torch.Tensor]) -> torch.Tensor:
    """Images ``[N, 3, S, S]`` of the chosen labels (style, shape, colour ``[N]``; ``texts`` to write)."""
    size = world.size
    s = size / 64
    n = len(indices)
    d = _Draws(r["u"][:, _CHOICE_COLUMNS:])
    px, py = draw.pixel_grid(size)
    cfg = WorldConfig(size=size, shape_radius=world.shape_radius, stroke_width=world.stroke_width,
                      backgrounds=world.backgrounds)
    images, bg_lum = _background(d, r, px, py, size, torch.zeros(n, dtype=torch.bool), world.backgrounds)
    contrast = d(*world.contrast)
    fg_lum = torch.where(bg_lum > 0.5, bg_lum - contrast, bg_lum + contrast).clamp(0.05, 0.95)
    ink = _named_colour(d, colour.clamp_min(0), fg_lum, world.hue_jitter)
    is_sketch = style == STYLES.index("sketch")
    # sketches: plain light paper, dark grey strokes
    paper = (d(0.85, 0.97)[:, None] + 0.1 * d(0, 0.3)[:, None] * _hue(d(0, 2 * math.pi)))[:, :, None, None]
    images = torch.where(is_sketch.view(-1, 1, 1, 1), paper.expand_as(images), images)
    pencil = d(0.05, 0.3)[:, None].expand(-1, 3)
    has_shape = shape >= 0
    shape_u = d.u[:, d.i:]
    picture_draws, sketch_draws = _Draws(shape_u), _Draws(shape_u)   # the same draws for both styles
    picture_alpha = _shape_alpha(picture_draws, px, py, shape.clamp_min(0), s, cfg)
    sketch_cfg = WorldConfig(size=size, shape_radius=world.shape_radius, stroke_width=world.sketch_width)
    sketch_alpha = _shape_alpha(sketch_draws, px, py, shape.clamp_min(0), s, sketch_cfg, outline=True)
    d.i += picture_draws.i
    alpha = torch.where(is_sketch.view(-1, 1, 1), sketch_alpha, picture_alpha) * has_shape.view(-1, 1, 1)
    images = draw.paint(images, alpha, torch.where(is_sketch[:, None], pencil, ink))
    # the text: a word item's in its named colour contrasting with the background; on a picture, written in
    # another named colour, dark, on a light paper label (the typographic attack's sticker)
    font_u, x_u, y_u, other = d(), d(), d(), d.choice(len(COLOURS) - 1)
    on_picture = style == STYLES.index("picture+word")
    text_colour = torch.where(on_picture, (colour.clamp_min(0) + 1 + other) % len(COLOURS), colour.clamp_min(0))
    text_rgb = _named_colour(d, text_colour, torch.where(on_picture, d(0.2, 0.35), fg_lum), world.hue_jitter)
    text_alpha, label_alpha = _text_alpha(texts, size, font_u, x_u, y_u, world.font_px, on_picture.tolist())
    label_rgb = d(0.85, 0.97)[:, None].expand(-1, 3)
    images = draw.paint(draw.paint(images, label_alpha, label_rgb), text_alpha, text_rgb)
    noise = world.pixel_noise * d() * (~is_sketch) + 0.01 * is_sketch
    images = images + noise.view(-1, 1, 1, 1) * r["pix"][:, None]
    assert d.i + _CHOICE_COLUMNS <= _N_UNIFORM
    return images.clamp(0, 1)


def _choices(u: torch.Tensor, world: MultimodalWorld) -> dict[str, torch.Tensor]:
    """The labels ``sample`` draws from the first columns of ``u [N, _N_UNIFORM]``."""
    def pick(col: torch.Tensor, probs: Sequence[float]) -> torch.Tensor:
        cum = torch.tensor(np.cumsum(probs) / sum(probs), dtype=torch.float32)
        return torch.searchsorted(cum, col.contiguous(), right=True).clamp_max(len(probs) - 1)

    style = pick(u[:, 0], world.style_probs)
    shape = (u[:, 1] * len(SHAPE_CLASSES)).long().clamp_max(len(SHAPE_CLASSES) - 1)
    colour = (u[:, 2] * len(COLOURS)).long().clamp_max(len(COLOURS) - 1)
    # the written concept of a word item: its kind, then a concept of that kind (reusing the shape / colour draw)
    kind = pick(u[:, 3], world.word_kinds)
    first = torch.tensor([0, len(SHAPE_CLASSES), len(SHAPE_CLASSES) + len(COLOURS)])[kind]
    count = torch.tensor([len(SHAPE_CLASSES), len(COLOURS), len(GROUPS)])[kind]
    written = first + torch.minimum((u[:, 5] * count).long(), count - 1)
    is_word = style == STYLES.index("word")
    word = torch.where(is_word, written, torch.where(style == STYLES.index("picture+word"), shape, NO_WORD))
    return {"style": style, "shape": torch.where(is_word, -1, shape), "colour": colour, "word": word}


def _captions(style: torch.Tensor, shape: torch.Tensor, colour: torch.Tensor, texts: Sequence[str | None],
              template_u: torch.Tensor, names_label: float) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Captions, template indices and caption styles.  One uniform per item picks the template; for a
    ``picture+word`` item its first ``names_label`` of the unit interval picks among the templates that name the
    word and the rest among the ``picture`` templates (at ``names_label = 1`` exactly the old draw)."""
    caps, chosen, cap_styles = [], [], []
    for i in range(len(style)):
        st, u = STYLES[int(style[i])], float(template_u[i])
        if st == "picture+word" and u >= names_label:
            st, u = "picture", (u - names_label) / (1.0 - names_label)
        elif st == "picture+word":
            u = u / names_label
        k = min(int(u * len(TEMPLATES[st])), len(TEMPLATES[st]) - 1)
        chosen.append(k)
        cap_styles.append(STYLES.index(st))
        caps.append(caption(st, k, shape=SHAPE_CLASSES[int(shape[i])] if shape[i] >= 0 else None,
                            colour=COLOURS[int(colour[i])] if colour[i] >= 0 else None,
                            word=texts[i] if st != "picture" else None))
    return caps, torch.tensor(chosen, dtype=torch.long), torch.tensor(cap_styles, dtype=torch.long)


def _check_indices(indices: Sequence[int]) -> list[int]:
    out = [int(i) for i in indices]
    if not out:
        raise MechscopeError("no indices given: pass at least one item index")
    if min(out) < 0:
        raise MechscopeError(f"item indices must be >= 0, got {min(out)}")
    return out


def sample(indices: Sequence[int], seed: int = 0, world: MultimodalWorld = MultimodalWorld()) -> MultimodalBatch:
    """The items ``indices`` of the world ``seed``: styles, concepts and captions drawn per item."""
    indices = _check_indices(indices)
    r = _randomness(indices, seed, world.size)
    c = _choices(r["u"], world)
    texts = [CONCEPT_NAMES[int(w)] if w >= 0 else None for w in c["word"]]
    colour = torch.where(c["style"] == STYLES.index("sketch"), -1, c["colour"])
    images = _draw(indices, seed, world, c["style"], c["shape"], c["colour"], texts, r)
    captions, template, cap_style = _captions(c["style"], c["shape"], colour, texts, r["u"][:, 4],
                                              world.caption_names_label)
    return MultimodalBatch(images, captions, c["style"], c["shape"], colour, c["word"], template, texts, cap_style)


def _broadcast(value: object, n: int | None) -> list:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if n is not None and len(value) != n:
            raise MechscopeError(f"render's sequences must have one length; got {len(value)} and {n}")
        return list(value)
    return [value] * (n or 1)


def render(shape: object, colour: object = None, style: object = "picture", word: object = None, *,
           text: object = None, seed: int = 0, indices: Sequence[int] | None = None,
           world: MultimodalWorld = MultimodalWorld()) -> MultimodalBatch:
    """Draw chosen concepts: ``N`` items, each argument a name, an id, ``None`` or a sequence of length ``N``.

    Args:
        shape: a shape class (``SHAPE_CLASSES``); ``None`` for ``word`` items.
        colour: a named colour (``COLOURS``) of the picture or of a word's ink; ``None``: the item's own draw.
            Sketches have none.
        style: one of ``STYLES``.
        word: the concept written on ``word`` / ``picture+word`` items (a name of ``CONCEPT_NAMES``);
            ``None`` on ``picture+word`` writes the shape's own name.
        text: free text written instead of a concept (e.g. random letters, the typographic attack's control);
            its ``word`` label is ``OTHER_TEXT``.  Printable ASCII without spaces, at most 16 characters.
        indices: the items' indices (default ``0..N-1``): the rest of each image (background, position, size,
            font...) is that of item ``(seed, index)``, so ``render`` of ``sample``'s labels gives ``sample``'s images.

    Unknown names raise, naming the valid ones.
    """
    seqs = [v for v in (shape, colour, style, word, text, indices) if isinstance(v, (list, tuple, torch.Tensor, range))]
    n = len(seqs[0]) if seqs else None
    shapes, colours, styles = _broadcast(shape, n), _broadcast(colour, n), _broadcast(style, n)
    n = len(shapes)
    words, texts = _broadcast(word, n), _broadcast(text, n)
    idx = _check_indices(range(n) if indices is None else _broadcast(list(indices), n))
    r = _randomness(idx, seed, world.size)
    drawn = _choices(r["u"], world)
    style_t, shape_t, colour_t, word_t, written = [], [], [], [], []
    for i in range(n):
        st = STYLES[_index("style", styles[i], STYLES)]
        has_picture = st != "word"
        if has_picture and shapes[i] is None:
            raise MechscopeError(f"style {st!r} draws a shape: pass one of {', '.join(SHAPE_CLASSES)}")
        if not has_picture and shapes[i] is not None:
            raise MechscopeError(f"style 'word' draws no shape (got shape={shapes[i]!r}); pass shape=None")
        sh = _index("shape", shapes[i], SHAPE_CLASSES) if has_picture else -1
        co = int(drawn["colour"][i]) if colours[i] is None else _index("colour", colours[i], COLOURS)
        writes = st in ("word", "picture+word")
        if not writes and (words[i] is not None or texts[i] is not None):
            raise MechscopeError(f"style {st!r} writes nothing; words are written in the styles 'word' and "
                                 "'picture+word'")
        if words[i] is not None and texts[i] is not None:
            raise MechscopeError("pass either word (a concept) or text (free text), not both")
        if texts[i] is not None:
            t = texts[i]
            if not isinstance(t, str) or not 0 < len(t) <= 16 or not all("!" <= ch <= "~" for ch in t):
                raise MechscopeError(f"text must be 1-16 printable ASCII characters without spaces, got {t!r}")
            wid, tx = OTHER_TEXT, t
        elif writes:
            if words[i] is None and st == "word":
                raise MechscopeError(f"style 'word' needs word=, one of {', '.join(CONCEPT_NAMES)}")
            wid = sh if words[i] is None else _index("concept", words[i], CONCEPT_NAMES)
            tx = CONCEPT_NAMES[wid]
        else:
            wid, tx = NO_WORD, None
        style_t.append(STYLES.index(st))
        shape_t.append(sh)
        colour_t.append(co)
        word_t.append(wid)
        written.append(tx)
    style_v, shape_v, colour_v = (torch.tensor(v, dtype=torch.long) for v in (style_t, shape_t, colour_t))
    images = _draw(idx, seed, world, style_v, shape_v, colour_v, written, r)
    colour_v = torch.where(style_v == STYLES.index("sketch"), -1, colour_v)
    captions, template, cap_style = _captions(style_v, shape_v, colour_v, written, r["u"][:, 4],
                                              world.caption_names_label)
    return MultimodalBatch(images, captions, style_v, shape_v, colour_v, torch.tensor(word_t, dtype=torch.long),
                           template, written, cap_style)


class MultimodalDataset:
    """``n`` items of the multimodal world ``seed``; ``sample(indices)`` and ``batches(batch_size, start=)``."""

    def __init__(self, n: int, seed: int = 0, world: MultimodalWorld = MultimodalWorld()) -> None:
        if not isinstance(n, int) or n < 1:
            raise MechscopeError(f"MultimodalDataset needs n >= 1 items, got {n!r}")
        self.n, self.seed, self.world = n, seed, world

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"MultimodalDataset(n={self.n}, seed={self.seed}, size={self.world.size})"

    def sample(self, indices: Sequence[int]) -> MultimodalBatch:
        bad = [i for i in indices if not 0 <= int(i) < self.n]
        if bad:
            raise MechscopeError(f"indices {bad[:5]} out of range for {self!r}")
        return sample(indices, self.seed, self.world)

    def batches(self, batch_size: int, start: int = 0) -> Iterator[tuple[list[int], MultimodalBatch]]:
        for lo in range(start, self.n, batch_size):
            idx = list(range(lo, min(lo + batch_size, self.n)))
            yield idx, self.sample(idx)
