"""The atlas's per-unit figures (microscope.evidence, layer_evidence, vision.evidence.scan_store) are drawn with
mechscope.raster: no matplotlib on the build's path, the same facts in the pixels, the same bytes each time."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mechscope import raster
from mechscope.microscope.evidence import _tuning_png, attribution_figure, bars_png, heatmap_png
from mechscope.microscope.layer_evidence import _drops_png
from mechscope.vision.circuits.attribution import attribute
from mechscope.vision.circuits.graph import upstream_of
from mechscope.vision.evidence.scan import scan
from mechscope.vision.evidence.scan_store import _layer_plot, _log_prob_png
from mechscope.vision.families.tuning import RadialTuning


@pytest.fixture(autouse=True)
def no_matplotlib(monkeypatch):
    """Fail any test here that renders a matplotlib figure."""
    from matplotlib.figure import Figure

    def refuse(*args, **kwargs):
        raise AssertionError("a per-unit atlas figure went through matplotlib")

    monkeypatch.setattr(Figure, "savefig", refuse)


def _image(data: bytes) -> np.ndarray:
    assert data[:4] == b"\x89PNG"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1)).eval()


def test_heatmap_and_bars_of_real_links_deterministic():
    net = _net()
    found = upstream_of(net, ["2:0"], "0", 16, k=3)[0]
    data = heatmap_png(found, "0 -> 2:0")
    assert data == heatmap_png(found, "0 -> 2:0")
    px = _image(data)
    strongest = max(float(r.weights.abs().max()) for r in found)   # one scale for all kernels: its end is used
    end = raster.diverging(np.array([strongest if any(float(r.weights.max()) == strongest for r in found)
                                     else -strongest]), strongest)[0]
    assert (np.abs(px - end).max(-1) == 0).sum() >= 16             # a full cell at the scale's end
    units = [{"unit": r.unit, "weight": r.strength if r.sign == "+" else -r.strength} for r in found]
    px = _image(bars_png(units, "0:1 -> downstream"))
    signs = {u["weight"] >= 0 for u in units}
    assert ((px == raster.RED).all(-1).any()) == (True in signs)
    assert ((px == raster.BLUE).all(-1).any()) == (False in signs)


def test_tuning_png_marks_the_preferred_orientation():
    degrees = torch.arange(0, 360, 5.0)
    gap = ((degrees - 200 + 180) % 360 - 180).abs()
    curve = 1 + 2 * torch.exp(-(gap / 25) ** 2)
    tuning = RadialTuning("mixed3a", [7], degrees, curve[None], torch.ones(1, 72), torch.full((1, 72), 0.5), (3, 3))
    assert float(tuning.preferred[0]) == 200.0
    px = _image(_tuning_png(tuning, 7))
    blue = (np.abs(px - np.array(raster.CYCLE[0])).max(-1) <= 40)
    ys, xs = np.nonzero(blue)
    lines = (np.abs(px - np.array(raster.CYCLE[1])).max(-1) <= 40)    # the straight-line tuning is drawn too
    assert lines.sum() > 50
    # the centre: where the line-tuning circle (constant 0.5) is centred
    ly, lx = np.nonzero(lines[:, : px.shape[1] - 60])                    # leave out the legend's key
    cx, cy = lx.mean(), ly.mean()
    far = int(np.argmax(np.hypot(xs - cx, ys - cy) * (ys < px.shape[0] - 30)))
    angle = math.degrees(math.atan2(cy - ys[far], xs[far] - cx)) % 360
    assert abs((angle - 200 + 180) % 360 - 180) < 6


def test_attribution_figure_has_image_map_and_bars():
    net = _net()
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    attr = attribute(net, image[None], "2:1@4,10", "0")
    data = attribution_figure(attr, image)
    assert data == attribution_figure(attr, image)
    px = _image(data)
    assert px.shape[1] > 3 * px.shape[0] / 2                               # three panels side by side
    assert ((px == (255, 255, 0)).all(-1)).sum() > 20                      # the unit's cell outlined
    top, bars = attr.top(8, 0), px[:, 2 * px.shape[1] // 3:]              # the right panel: the contributors
    assert top and ((bars == raster.RED).all(-1).any()) == any(v > 0 for _, v in top)
    assert ((bars == raster.BLUE).all(-1).any()) == any(v < 0 for _, v in top)


def test_scan_plots_and_ablation_bars():
    net = _net()
    images = torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(2))

    class Data:
        skipped: list = []

        def __len__(self):
            return 12

        def batches(self, n, start=0):
            for lo in range(start, 12, n):
                yield list(range(lo, min(lo + n, 12))), images[lo:lo + n]

    stats = scan(net, Data(), "2", k=2, progress=False).stats["2"]
    one = _log_prob_png(stats, 1)
    assert one == _log_prob_png(stats, 1)
    grid = _image(_layer_plot(stats, [0, 1, 2]))
    assert grid.shape[1] > 2.5 * _image(one).shape[1] * 320 / 400          # three plots in one row
    px = _image(_drops_png({"shape": 0.2, "curve": -0.1, "boundary": 0.0, "colour": 0.05}, "zero ablation of 2:0"))
    assert (px == raster.RED).all(-1).any() and (px == raster.BLUE).all(-1).any()
