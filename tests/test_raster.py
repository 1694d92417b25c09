"""mechscope.raster: charts drawn with Pillow — valid PNGs, pixels where the data puts them, the same bytes for the
same input, and no label cut off by the image's edge."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from mechscope import raster


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def _mask(pixels: np.ndarray, colour: tuple[int, int, int], tol: int = 0) -> np.ndarray:
    return (np.abs(pixels - np.array(colour)).max(-1) <= tol)


def _inside(image: Image.Image) -> None:
    assert image.info["texts"], "every chart has at least a title"
    for text, (left, top, right, bottom) in image.info["texts"]:
        assert 0 <= left and 0 <= top and right <= image.width and bottom <= image.height, (text, image.size)


CHARTS = {
    "bars": lambda: raster.bar_chart(["conv2d2:42", "conv2d2:7", "mixed3b:117"], [0.5, -0.2, 0.1], title="a -> b"),
    "long bars": lambda: raster.bar_chart(["a_rather_long_layer_name:123"] * 2, [1.0, 2.0],
                                          title="a title much longer than the two bars below it", ylabel="drop"),
    "hbars": lambda: raster.hbar_chart(["s:1", "s:22"], [2.0, -1.0], title="top contributors", xlabel="contribution"),
    "polar": lambda: raster.polar_curves(range(0, 360, 5), [("curves", np.ones(72)), ("lines", np.zeros(72))],
                                         title="mixed3a:1", mark=40.0),
    "heatmaps": lambda: raster.heatmaps(np.arange(18.0).reshape(2, 3, 3) - 9, title="conv2d1 -> conv2d2:0"),
    "image": lambda: raster.image_panel(np.zeros((8, 8, 3), np.uint8), title="top example", rect=(2, 2, 4, 4)),
    "heat": lambda: raster.heat_panel(np.eye(4) - 0.5, title="a ← b", extent=(64, 64), xlabel="y", ylabel="x"),
    "line": lambda: raster.line_plot(np.arange(10.0), np.r_[np.arange(5.0), np.nan, np.arange(4.0)], title="t",
                                     xlabel="activation value", ylabel="log probability density"),
}


@pytest.mark.parametrize("kind", sorted(CHARTS))
def test_png_valid_deterministic_and_labels_inside(kind):
    image = CHARTS[kind]()
    data = raster.png(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = Image.open(io.BytesIO(data))
    assert back.size == image.size and back.mode == "RGB" and 60 < image.width < 1200 and 40 < image.height < 800
    assert raster.png(CHARTS[kind]()) == data            # same input, same bytes
    _inside(image)
    border = np.concatenate([_pixels(image)[[0, -1]].reshape(-1, 3), _pixels(image)[:, [0, -1]].reshape(-1, 3)])
    assert (border == 255).all(), "nothing is drawn on the outermost pixels (nothing runs off the edge)"


def test_bars_signed_about_the_zero_line_and_scaled_to_data():
    image = raster.bar_chart(["p", "n"], [0.5, -0.2], title="t")
    px = _pixels(image)
    red, blue = _mask(px, raster.RED), _mask(px, raster.BLUE)
    red_rows, blue_rows = np.flatnonzero(red.any(1)), np.flatnonzero(blue.any(1))
    red_cols, blue_cols = np.flatnonzero(red.any(0)), np.flatnonzero(blue.any(0))
    assert red_cols.max() < blue_cols.min()               # the first value's bar is left of the second's
    black = _mask(px, raster.BLACK).sum(1)
    zero = int(np.flatnonzero((black > 0.5 * image.width) & (np.arange(len(black)) > red_rows.min()))[0])
    assert red_rows.max() < zero < blue_rows.min()       # red above the zero line, blue below it
    assert (zero - red_rows.min()) / (blue_rows.max() - zero) == pytest.approx(0.5 / 0.2, rel=0.12)


def test_hbars_first_on_top_signed_about_zero():
    px = _pixels(raster.hbar_chart(["big", "neg"], [2.0, -1.0], title="t"))
    red, blue = _mask(px, raster.RED), _mask(px, raster.BLUE)
    assert np.flatnonzero(red.any(1)).max() < np.flatnonzero(blue.any(1)).min()
    assert np.flatnonzero(blue.any(0)).max() < np.flatnonzero(red.any(0)).min()
    widths = red.any(0).sum(), blue.any(0).sum()
    assert widths[0] / widths[1] == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize("peak", [0.0, 120.0, 255.0])
def test_polar_curve_farthest_point_is_the_preferred_angle(peak):
    degrees = np.arange(0, 360, 5.0)
    gap = np.abs((degrees - peak + 180) % 360 - 180)
    values = 1 + 3 * np.exp(-(gap / 30) ** 2)             # one bump, peak value 4 at ``peak``
    image = raster.polar_curves(degrees, [("curves", values)], title="u")
    px = _pixels(image)
    ring = _mask(px, raster.BLACK, tol=60)                # the outer circle (and the text, masked out next)
    for _, (left, top, right, bottom) in image.info["texts"]:
        ring[max(top - 1, 0):bottom + 1, max(left - 1, 0):right + 1] = False
    ys, xs = np.nonzero(ring)
    cx, cy = xs.mean(), ys.mean()
    outer = np.hypot(xs - cx, ys - cy).mean()
    ys, xs = np.nonzero(_mask(px, raster.CYCLE[0], tol=40))
    within = np.hypot(xs - cx, ys - cy) < outer + 4     # the curve, not the legend's key in the corner
    ys, xs = ys[within], xs[within]
    far = int(np.argmax(np.hypot(xs - cx, ys - cy)))
    angle = math.degrees(math.atan2(cy - ys[far], xs[far] - cx)) % 360
    assert abs((angle - peak + 180) % 360 - 180) < 4
    assert np.hypot(xs[far] - cx, ys[far] - cy) == pytest.approx(outer, abs=3)   # the peak reaches the last ring


def test_heatmaps_share_one_scale_symmetric_about_zero():
    k = np.zeros((2, 3, 3))
    k[0, 1, 2], k[1, 0, 0], k[1, 2, 1] = 2.0, -2.0, 0.2   # strongest + and - in different kernels
    cell = 10
    px = _pixels(raster.heatmaps(k, title="t", cell=cell))
    reddest, bluest = raster.diverging(np.array([2.0, -2.0]), 2.0)
    assert tuple(reddest) == (103, 0, 31) and tuple(bluest) == (5, 48, 97)   # the ends of RdBu_r
    r, b = np.argwhere(_mask(px, tuple(reddest))), np.argwhere(_mask(px, tuple(bluest)))
    assert len(r) == len(b) == cell * cell                # one cell each
    redness = px[..., 0] - px[..., 2]
    assert redness.max() == redness[tuple(r[0])]          # the most positive weight is the reddest cell
    # layout: kernel 1's (0, 0) lies (3 - 2 + 1) cells right of kernel 0's (1, 2) (one blank cell between) and 1 up
    assert (b.min(0) - r.min(0)).tolist() == [-1 * cell, 2 * cell]
    pale = raster.diverging(np.array([0.2]), 2.0)[0]      # 0.2 on the shared scale of 2: pale, not saturated
    assert _mask(px, tuple(pale)).sum() == cell * cell and pale.min() > 200


def test_diverging_zero_white_nan_blank_and_symmetric():
    c = raster.diverging(np.array([0.0, np.nan, 1.0, -1.0, 5.0]), 1.0).astype(int)
    assert tuple(c[0]) == (247, 247, 247) and tuple(c[1]) == (255, 255, 255)
    assert tuple(c[4]) == tuple(c[2])                      # clipped at vmax
    assert c[2, 0] > c[2, 2] and c[3, 2] > c[3, 0]         # + red, - blue


def test_image_panel_rectangle_at_the_cell():
    image = np.full((16, 16, 3), 128, np.uint8)
    px = _pixels(raster.image_panel(image, title="t", rect=(8, 4, 12, 8), side=160))   # scale 10
    ys, xs = np.nonzero(_mask(px, (255, 255, 0)))
    grey = np.nonzero(_mask(px, (128, 128, 128)))
    x0, y0 = grey[1].min(), grey[0].min()                 # the image's top-left corner
    assert (xs.min() - x0, ys.min() - y0, xs.max() - x0, ys.max() - y0) == (80, 40, 119, 79)


def test_line_plot_leaves_gaps_at_nan():
    y = np.r_[np.zeros(10), np.full(10, np.nan), np.zeros(10)]
    px = _pixels(raster.line_plot(np.arange(30.0), y, title="t", size=(330, 200)))
    cols = np.flatnonzero(_mask(px, raster.CYCLE[0], tol=60).any(0))
    assert np.diff(cols).max() > 60                       # no line across the ten missing bins
    for empty in (np.full(5, np.nan), np.zeros(0)):      # a unit that never fired: axes and title, no line
        _inside(raster.line_plot(np.arange(float(len(empty))), empty, title="t"))


def test_nice_ticks_and_plain_text():
    ticks = raster.nice_ticks(-0.23, 0.53, 5)
    assert ticks == [-0.2, 0.0, 0.2, 0.4]
    assert raster.nice_ticks(0, 64, 4) == [0, 20, 40, 60] or raster.nice_ticks(0, 64, 4) == [0, 25, 50]
    assert raster.plain("a ← b × c · 5°") == "a <- b x c · 5°"   # glyphs the bundled font lacks, spelled out
