"""The drawing surface of ``mechscope.raster``: the bundled font and text sizes, PNG encoding, the diverging colour
scale, round tick values, and ``Page`` (a white image that records where its texts went, with anti-aliased
polylines) plus ``axes`` (a frame with ticks and labels) that the charts are built from.

Example::

    >>> from mechscope.raster.canvas import Page, nice_ticks, plain
    >>> nice_ticks(-0.23, 0.53, 5), plain("a ← b")
    ([-0.2, 0.0, 0.2, 0.4], 'a <- b')
    >>> page = Page(80, 30)
    >>> page.text((40, 4), "title", anchor="ma") == page.done().info["texts"][0][1]
    True
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RED, BLUE, BLACK, GREY, WHITE = (178, 24, 43), (33, 102, 172), (0, 0, 0), (150, 150, 150), (255, 255, 255)
CYCLE = ((31, 119, 180), (255, 127, 14))   # matplotlib's C0, C1
TITLE, LABEL, TICK = 12, 11, 10             # font sizes, pixels
_RDBU_R = np.array([(5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240), (247, 247, 247),
                    (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43), (103, 0, 31)], dtype=np.float64)
_SS = 3   # supersampling of anti-aliased lines

Box = tuple[int, int, int, int]


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled scalable font at ``size`` pixels (loaded once per size)."""
    return ImageFont.load_default(size=size)


_ASCII = {"←": "<-", "→": "->", "×": "x", "−": "-", "–": "-", "—": "-", "≥": ">=", "≤": "<=", "µ": "u", "σ": "s"}


@lru_cache(maxsize=512)
def _has_glyph(char: str) -> bool:
    missing = font(TICK).getmask("\ue000")      # a private-use character: the font's "no glyph" box
    mask = font(TICK).getmask(char)
    return mask.size != missing.size or bytes(mask) != bytes(missing)


def plain(text: str) -> str:
    """``text`` with the characters the bundled font cannot draw spelled in ASCII (``←`` as ``<-``, ``×`` as ``x``;
    ``?`` where no spelling is known), so that no label shows a box."""
    return "".join(c if c.isascii() or _has_glyph(c) else _ASCII.get(c, "?") for c in text)


def text_size(text: str, size: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of ``text`` at ``size`` (height from the font's ascent + descent)."""
    left, _, right, _ = font(size).getbbox(plain(text))
    ascent, descent = font(size).getmetrics()
    return right - left, ascent + descent


def png(image: Image.Image) -> bytes:
    """PNG bytes of ``image`` (no metadata: the same pixels give the same bytes; zlib level 3: about twice as fast
    as 6 for files ~5 % larger)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def diverging(values: np.ndarray, vmax: float) -> np.ndarray:
    """``values [...]`` -> RGB ``uint8 [..., 3]`` on ``RdBu_r`` from ``-vmax`` (dark blue) to ``+vmax`` (dark red),
    white-ish at 0; ``nan`` -> white."""
    v = np.asarray(values, dtype=np.float64)
    t = np.clip((np.nan_to_num(v) / (vmax or 1.0) + 1) / 2, 0, 1) * (len(_RDBU_R) - 1)
    lo = np.minimum(t.astype(np.int64), len(_RDBU_R) - 2)
    frac = (t - lo)[..., None]
    rgb = _RDBU_R[lo] * (1 - frac) + _RDBU_R[lo + 1] * frac
    rgb[np.isnan(v)] = 255
    return np.rint(rgb).astype(np.uint8)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values within ``[lo, hi]`` (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(1, n - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [round(k * step, 12) for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def fmt(v: float) -> str:
    return f"{v:.3g}" if v else "0"


class Page:
    """A white RGB image with a draw handle that records the boxes of the texts drawn on it."""

    def __init__(self, width: int, height: int) -> None:
        self.image = Image.new("RGB", (int(width), int(height)), WHITE)
        self.draw = ImageDraw.Draw(self.image)
        self.texts: list[tuple[str, Box]] = []

    def text(self, xy: tuple[float, float], text: str, size: int = TICK, anchor: str = "la",
             fill: tuple[int, int, int] = BLACK) -> Box:
        text = plain(text)
        left, top, right, bottom = self.draw.textbbox(xy, text, font=font(size), anchor=anchor)
        box = (math.floor(left), math.floor(top), math.ceil(right), math.ceil(bottom))
        self.draw.text(xy, text, font=font(size), anchor=anchor, fill=fill)
        self.texts.append((text, box))
        return box

    def vtext(self, xy: tuple[float, float], text: str, size: int = TICK, anchor: str = "rm") -> Box:
        """``text`` rotated 90° (read bottom-up), its box placed at ``xy`` by ``anchor`` (``r``/``m`` horizontal,
        ``t``/``m`` vertical: ``"rm"`` right-middle, ``"mt"`` centred below ``xy``)."""
        text = plain(text)
        w, h = text_size(text, size)
        strip = Image.new("L", (w + 2, h), 0)
        ImageDraw.Draw(strip).text((1, 0), text, font=font(size), fill=255)
        strip = strip.transpose(Image.Transpose.ROTATE_90)
        x = xy[0] - strip.width if anchor[0] == "r" else xy[0] - strip.width // 2
        y = xy[1] if anchor[1] == "t" else xy[1] - strip.height // 2
        x, y = int(round(x)), int(round(y))
        self.image.paste(BLACK, (x, y, x + strip.width, y + strip.height), strip)
        box = (x, y, x + strip.width, y + strip.height)
        self.texts.append((text, box))
        return box

    def lines(self, pieces: Sequence[np.ndarray], colour: tuple[int, int, int], width: float = 1.5,
              dash: float = 0.0) -> None:
        """Anti-aliased polylines ``[n, 2]`` (pixel ``x, y``); ``dash``: on/off length in pixels (0: solid)."""
        mask = Image.new("L", (self.image.width * _SS, self.image.height * _SS), 0)
        draw = ImageDraw.Draw(mask)
        for piece in pieces:
            for seg in (_dashes(piece, dash) if dash else [piece]):
                if len(seg) > 1:
                    draw.line([tuple(p) for p in (seg * _SS).tolist()], fill=255, width=max(1, round(width * _SS)),
                              joint="curve")
        self.image.paste(colour, (0, 0), mask.reduce(_SS))

    def plain_lines(self, pieces: Sequence[np.ndarray], colour: tuple[int, int, int], width: int = 1,
                    dash: float = 0.0) -> None:
        """Polylines as ``lines`` draws them, without anti-aliasing (for straight rules and legend keys)."""
        for piece in pieces:
            for seg in (_dashes(piece, dash) if dash else [piece]):
                self.draw.line([tuple(p) for p in seg.tolist()], fill=colour, width=width)

    def done(self) -> Image.Image:
        self.image.info["texts"] = list(self.texts)
        return self.image


def _dashes(points: np.ndarray, length: float) -> list[np.ndarray]:
    """The "on" pieces of a polyline cut into dashes of ``length`` pixels (gaps of the same length)."""
    out, run, gone, on = [], [points[0]], 0.0, True
    for a, b in zip(points[:-1], points[1:]):
        seg = float(np.hypot(*(b - a)))
        pos = 0.0
        while seg - pos > length - gone:
            pos += length - gone
            cut = a + (b - a) * (pos / seg)
            if on:
                out.append(np.array(run + [cut]))
            run, gone, on = [cut], 0.0, not on
        gone += seg - pos
        run.append(b)
    if on and len(run) > 1:
        out.append(np.array(run))
    return out


def axes(page: Page, box: Box, xlim: tuple[float, float], ylim: tuple[float, float], *,
          xticks: Sequence[float] | None = None, yticks: Sequence[float] | None = None,
          xlabel: str | None = None, ylabel: str | None = None) -> None:
    """A frame at ``box`` with numeric ticks below and left, and axis labels."""
    left, top, right, bottom = box
    page.draw.rectangle(box, outline=BLACK)
    for v in xticks or ():
        x = left + (v - xlim[0]) / (xlim[1] - xlim[0]) * (right - left)
        page.draw.line([(x, bottom), (x, bottom + 3)], fill=BLACK)
        page.text((x, bottom + 4), fmt(v), TICK, "mt")
    for v in yticks or ():
        y = bottom - (v - ylim[0]) / (ylim[1] - ylim[0]) * (bottom - top)
        page.draw.line([(left - 3, y), (left, y)], fill=BLACK)
        page.text((left - 5, y), fmt(v), TICK, "rm")
    if xlabel:
        page.text(((left + right) / 2, bottom + 6 + text_size("0", TICK)[1]), xlabel, LABEL, "mt")
    if ylabel:
        widest = max((text_size(fmt(v), TICK)[0] for v in yticks or ()), default=0)
        page.vtext((left - 8 - widest, (top + bottom) / 2), ylabel, LABEL, "rm")


def limits(values: Sequence[float], pad: float = 0.05, zero: bool = True) -> tuple[float, float]:
    finite = [float(v) for v in values if math.isfinite(float(v))] or [0.0]
    lo, hi = (min(finite + [0.0]), max(finite + [0.0])) if zero else (min(finite), max(finite))
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    span = hi - lo
    return lo - (pad * span if lo < 0 or not zero else 0), hi + (pad * span if hi > 0 or not zero else 0)


def ylabel_room(ticks: Sequence[float], ylabel: str | None) -> int:
    widest = max((text_size(fmt(v), TICK)[0] for v in ticks), default=0)
    return 12 + widest + (text_size(ylabel, LABEL)[1] + 4 if ylabel else 0)


__all__ = ["Page", "axes", "font", "text_size", "plain", "png", "diverging", "nice_ticks", "limits", "ylabel_room",
           "fmt", "RED", "BLUE", "BLACK", "GREY", "WHITE", "CYCLE", "TITLE", "LABEL", "TICK"]
