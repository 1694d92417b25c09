"""The charts of ``mechscope.raster`` (see there): signed bars, polar curves, kernel heatmaps, image and heat
panels, line plots, and ``tile`` to lay several side by side.

Example::

    >>> from mechscope.raster.charts import polar_curves
    >>> polar_curves(range(0, 360, 90), [("curves", [1, 2, 1, 0])], title="u", mark=90).size
    (280, 285)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from mechscope.raster.canvas import (BLACK, BLUE, CYCLE, GREY, RED, TICK, TITLE, Page, axes, diverging, fmt, limits,
                                     nice_ticks, text_size, ylabel_room)


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str, ylabel: str | None = None,
              height: int = 200) -> Image.Image:
    """Signed bars (red ``>= 0`` above the zero line, blue ``< 0`` below), one per label; labels under the bars,
    turned upright when they do not fit side by side.  ``[n]`` labels and values."""
    values = [float(v) for v in values]
    ylim = limits(values)
    ticks = nice_ticks(*ylim, n=5)
    pitch = 30
    flat = max((text_size(s, TICK)[0] for s in labels), default=0) + 4 <= pitch
    under = (text_size("0", TICK)[1] if flat else max((text_size(s, TICK)[0] for s in labels), default=0)) + 10
    left = ylabel_room(ticks, ylabel) + 4
    top = text_size(title, TITLE)[1] + 10
    width = max(left + pitch * len(values) + 12, text_size(title, TITLE)[0] + 16, 160)
    page = Page(width, top + height + under)
    box = (left, top, width - 10, top + height)
    axes(page, box, (0, 1), ylim, yticks=ticks, ylabel=ylabel)
    zero = box[3] - (0 - ylim[0]) / (ylim[1] - ylim[0]) * (box[3] - box[1])
    step = (box[2] - box[0]) / max(1, len(values))
    for i, (name, v) in enumerate(zip(labels, values, strict=True)):
        x0, x1 = box[0] + step * (i + 0.15), box[0] + step * (i + 0.85)
        y = box[3] - (v - ylim[0]) / (ylim[1] - ylim[0]) * (box[3] - box[1])
        if v:
            page.draw.rectangle((x0, min(y, zero), x1, max(y, zero)), fill=RED if v >= 0 else BLUE)
        if flat:
            page.text(((x0 + x1) / 2, box[3] + 4), name, TICK, "mt")
        else:
            page.vtext(((x0 + x1) / 2, box[3] + 4), name, TICK, "mt")
    page.draw.line([(box[0], zero), (box[2], zero)], fill=BLACK)
    page.text((width / 2, 4), title, TITLE, "ma")
    return page.done()


def hbar_chart(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str | None = None,
               width: int = 300) -> Image.Image:
    """Horizontal signed bars, the first label on top (red ``> 0`` right of the zero line, blue left)."""
    values = [float(v) for v in values]
    xlim = limits(values)
    ticks = nice_ticks(*xlim, n=5)
    left = max((text_size(s, TICK)[0] for s in labels), default=0) + 12
    top = text_size(title, TITLE)[1] + 10
    rows = max(len(values), 3)
    height = 22 * rows
    under = 2 * text_size("0", TICK)[1] + 12
    page = Page(max(width, left + 120, text_size(title, TITLE)[0] + 16), top + height + under)
    box = (left, top, page.image.width - 14, top + height)
    axes(page, box, xlim, (0, 1), xticks=ticks, xlabel=xlabel)
    zero = box[0] + (0 - xlim[0]) / (xlim[1] - xlim[0]) * (box[2] - box[0])
    for i, (name, v) in enumerate(zip(labels, values, strict=True)):
        y0, y1 = top + 22 * i + 3, top + 22 * i + 19
        x = box[0] + (v - xlim[0]) / (xlim[1] - xlim[0]) * (box[2] - box[0])
        if v:
            page.draw.rectangle((min(x, zero), y0, max(x, zero), y1), fill=RED if v > 0 else BLUE)
        page.text((left - 5, (y0 + y1) / 2), name, TICK, "rm")
    page.draw.line([(zero, box[1]), (zero, box[3])], fill=(77, 77, 77))
    page.text((page.image.width / 2, 4), title, TITLE, "ma")
    return page.done()


def polar_curves(degrees: Sequence[float], curves: Sequence[tuple[str, Sequence[float]]], *, title: str,
                 mark: float | None = None, size: int = 280) -> Image.Image:
    """Closed curves ``r(θ)`` over ``degrees [O]`` (0° right, counter-clockwise), the first solid blue, the next
    dashed orange, a legend of their names; rings at round values (the centre is ``min(0, min r)``); ``mark``:
    an angle in degrees ruled from the centre to the first curve (its preferred orientation)."""
    theta = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    data = [np.asarray(v, dtype=np.float64) for _, v in curves]
    lo = min(0.0, *(float(d.min()) for d in data))
    hi = max(float(d.max()) for d in data)
    hi = hi if hi > lo else lo + 1.0
    top = text_size(title, TITLE)[1] + 8
    label = text_size("315°", TICK)
    radius = (size - 2 * label[0] - 16) / 2
    cx, cy = size / 2, top + label[1] + 6 + radius
    page = Page(size, cy + radius + label[1] + 10)

    def xy(t: np.ndarray, r: np.ndarray) -> np.ndarray:
        s = (r - lo) / (hi - lo) * radius
        return np.stack([cx + s * np.cos(t), cy - s * np.sin(t)], axis=-1)

    for v in nice_ticks(lo, hi, n=4):
        if v > lo:
            s = (v - lo) / (hi - lo) * radius
            page.draw.ellipse((cx - s, cy - s, cx + s, cy + s), outline=(210, 210, 210))
            p = xy(np.array(math.radians(22.5)), np.array(v))
            page.text((float(p[0]) + 2, float(p[1])), fmt(v), TICK - 1, "lb", fill=(90, 90, 90))
    for a in range(0, 360, 45):
        end = xy(np.array(math.radians(a)), np.array(hi))
        page.draw.line([(cx, cy), tuple(end.tolist())], fill=(210, 210, 210))
        out = xy(np.array(math.radians(a)), np.array(hi + (hi - lo) * 0.04))
        anchor = ("l" if math.cos(math.radians(a)) > 0.1 else "r" if math.cos(math.radians(a)) < -0.1 else "m") + \
                 ("b" if math.sin(math.radians(a)) > 0.1 else "t" if math.sin(math.radians(a)) < -0.1 else "m")
        page.text(tuple(out.tolist()), f"{a}°", TICK, anchor)
    page.draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=BLACK)
    if mark is not None:
        i = int(np.argmin(np.abs((np.rad2deg(theta) - mark + 180) % 360 - 180)))
        end = xy(theta[i], data[0][i])
        page.plain_lines([np.array([[cx, cy], end])], GREY, dash=3.0)
    for k, d in enumerate(data):
        closed = np.concatenate([xy(theta, d), xy(theta[:1], d[:1])])
        page.lines([closed], CYCLE[k % 2], width=1.6 if k == 0 else 1.3, dash=0.0 if k == 0 else 3.0)
    if mark is not None:
        page.draw.ellipse((end[0] - 3, end[1] - 3, end[0] + 3, end[1] + 3), fill=CYCLE[0])
    y = page.image.height - 6
    for k, (name, _) in reversed(list(enumerate(curves))):
        x = page.image.width - 6 - text_size(name, TICK)[0]
        page.text((x, y), name, TICK, "ld")
        page.plain_lines([np.array([[x - 22, y - 5], [x - 4, y - 5]])], CYCLE[k % 2], 2, 0.0 if k == 0 else 3.0)
        y -= text_size(name, TICK)[1] + 2
    if mark is not None:
        page.text((6, page.image.height - 6), f"preferred {mark:.0f}°", TICK, "ld")
    page.text((size / 2, 4), title, TITLE, "ma")
    return page.done()


def heatmaps(kernels: np.ndarray, *, title: str, vmax: float | None = None, cell: int = 16) -> Image.Image:
    """Kernels ``[k, h, w]`` side by side (one blank cell between), each weight a ``cell``-pixel square on one
    shared ``RdBu_r`` scale from ``-vmax`` to ``+vmax`` (default the largest ``|w|``)."""
    k = np.asarray(kernels, dtype=np.float64)
    if k.ndim == 2:
        k = k[None]
    c, kh, kw = k.shape
    top_value = float(vmax) if vmax is not None else float(np.abs(k).max()) or 1.0
    cells = np.full((kh, c * (kw + 1) - 1), np.nan)
    for i in range(c):
        cells[:, i * (kw + 1): i * (kw + 1) + kw] = k[i]
    pixels = np.repeat(np.repeat(diverging(cells, top_value), cell, 0), cell, 1)
    head = text_size(title, TITLE)[1] + 10
    width = max(pixels.shape[1] + 16, text_size(title, TITLE)[0] + 16)
    page = Page(width, head + pixels.shape[0] + 8)
    x0 = (width - pixels.shape[1]) // 2
    page.image.paste(Image.fromarray(pixels), (x0, head))
    for i in range(c):
        page.draw.rectangle((x0 + i * (kw + 1) * cell - 1, head - 1, x0 + (i * (kw + 1) + kw) * cell,
                             head + kh * cell), outline=BLACK)
    page.text((width / 2, 4), title, TITLE, "ma")
    return page.done()


def image_panel(image: np.ndarray, *, title: str, rect: tuple[float, float, float, float] | None = None,
                side: int = 192) -> Image.Image:
    """An RGB image ``uint8 [H, W, 3]`` scaled (nearest) to ``side`` pixels on its longer side, titled, with
    ``rect`` = ``(left, top, right, bottom)`` in the image's pixel edges outlined in yellow."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    shown = Image.fromarray(np.ascontiguousarray(image)).resize((round(w * scale), round(h * scale)),
                                                                Image.Resampling.NEAREST)
    head = text_size(title, TITLE)[1] + 10
    width = max(shown.width + 16, text_size(title, TITLE)[0] + 16)
    page = Page(width, head + shown.height + 8)
    x0 = (width - shown.width) // 2
    page.image.paste(shown, (x0, head))
    if rect is not None:
        box = [x0 + rect[0] * scale, head + rect[1] * scale, x0 + rect[2] * scale - 1, head + rect[3] * scale - 1]
        page.draw.rectangle(box, outline=(255, 255, 0), width=2)
    page.text((width / 2, 4), title, TITLE, "ma")
    return page.done()


def heat_panel(values: np.ndarray, *, title: str, extent: tuple[int, int] | None = None, side: int = 192,
               xlabel: str | None = None, ylabel: str | None = None) -> Image.Image:
    """A signed map ``[rows, cols]`` stretched (nearest) over ``extent = (height, width)`` units (default its own
    cells) drawn ``side`` pixels on the longer side, on ``RdBu_r`` symmetric about 0, with ticks in those units
    (rows down from the top) and a colour bar."""
    v = np.asarray(values, dtype=np.float64)
    bound = float(np.abs(v).max()) or 1.0
    eh, ew = extent or v.shape
    scale = side / max(eh, ew)
    pw, ph = round(ew * scale), round(eh * scale)
    xticks, yticks = nice_ticks(0, ew, 4), nice_ticks(0, eh, 4)
    bar_ticks = nice_ticks(-bound, bound, 5)
    left = ylabel_room(yticks, ylabel) + 4
    head = text_size(title, TITLE)[1] + 10
    bar_x = left + pw + 12
    width = max(bar_x + 12 + 8 + max(text_size(fmt(t), TICK)[0] for t in bar_ticks) + 6,
                text_size(title, TITLE)[0] + 16)
    under = 2 * text_size("0", TICK)[1] + 12 if xlabel else text_size("0", TICK)[1] + 8
    page = Page(width, head + ph + under)
    page.image.paste(Image.fromarray(diverging(v, bound)).resize((pw, ph), Image.Resampling.NEAREST), (left, head))
    axes(page, (left - 1, head - 1, left + pw, head + ph), (0, ew), (eh, 0), xticks=xticks, yticks=yticks,
          xlabel=xlabel, ylabel=ylabel)
    ramp = diverging(np.linspace(bound, -bound, ph)[:, None].repeat(12, 1), bound)
    page.image.paste(Image.fromarray(ramp), (bar_x, head))
    page.draw.rectangle((bar_x - 1, head - 1, bar_x + 12, head + ph), outline=BLACK)
    for t in bar_ticks:
        y = head + (bound - t) / (2 * bound) * (ph - 1)
        page.draw.line([(bar_x + 12, y), (bar_x + 15, y)], fill=BLACK)
        page.text((bar_x + 17, y), fmt(t), TICK, "lm")
    page.text((width / 2, 4), title, TITLE, "ma")
    return page.done()


def line_plot(x: Sequence[float], y: Sequence[float], *, title: str, xlabel: str | None = None,
              ylabel: str | None = None, size: tuple[int, int] = (400, 250)) -> Image.Image:
    """One blue line ``y [n]`` against ``x [n]``; ``nan`` in ``y`` leaves a gap (as matplotlib does)."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    xlim, ylim = limits(xs[np.isfinite(ys)], zero=False), limits(ys, zero=False)   # x: where y is drawn
    xticks, yticks = nice_ticks(*xlim, n=6), nice_ticks(*ylim, n=6)
    left = ylabel_room(yticks, ylabel) + 4
    head = text_size(title, TITLE)[1] + 10
    under = (2 if xlabel else 1) * text_size("0", TICK)[1] + 12
    width = max(size[0], text_size(title, TITLE)[0] + 16)
    page = Page(width, size[1])
    box = (left, head, width - 14, size[1] - under)
    axes(page, box, xlim, ylim, xticks=xticks, yticks=yticks, xlabel=xlabel, ylabel=ylabel)
    px = box[0] + (xs - xlim[0]) / (xlim[1] - xlim[0]) * (box[2] - box[0])
    py = box[3] - (ys - ylim[0]) / (ylim[1] - ylim[0]) * (box[3] - box[1])
    ok = np.isfinite(py)
    runs = np.split(np.arange(len(ys)), np.flatnonzero(np.diff(ok.astype(np.int8))) + 1)
    page.lines([np.stack([px[r], py[r]], 1) for r in runs if len(r) and ok[r[0]]], CYCLE[0], width=1.4)
    page.text((width / 2, 4), title, TITLE, "ma")
    return page.done()


def tile(images: Sequence[Image.Image], columns: int | None = None, gap: int = 8) -> Image.Image:
    """Images side by side in rows of ``columns`` (default all in one row), top-aligned, on white; the result's
    ``info["texts"]`` holds every part's texts, moved to where the part lies."""
    columns = columns or len(images)
    rows = [images[i:i + columns] for i in range(0, len(images), columns)]
    widths = [max(im.width for im in images[c::columns]) for c in range(min(columns, len(images)))]
    heights = [max(im.height for im in r) for r in rows]
    page = Page(sum(widths) + gap * (len(widths) - 1), sum(heights) + gap * (len(heights) - 1))
    y = 0
    for r, part in enumerate(rows):
        x = 0
        for c, im in enumerate(part):
            page.image.paste(im, (x, y))
            page.texts += [(t, (b[0] + x, b[1] + y, b[2] + x, b[3] + y)) for t, b in im.info.get("texts", [])]
            x += widths[c] + gap
        y += heights[r] + gap
    return page.done()


__all__ = ["bar_chart", "hbar_chart", "polar_curves", "heatmaps", "image_panel", "heat_panel", "line_plot", "tile"]
