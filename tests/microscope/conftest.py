"""A store with one layer of a thousand units (``wide_store``): the size at which the Microscope's layer grid must
stay fast, for the page-size test (``test_grid.py``) and the browser's lazy-loading test (``test_browser_grid.py``).

Model ``big``:

* ``wide``: ``WIDE_UNITS`` units, each with its own feature visualization (a distinct 24x24 PNG, so the browser
  fetches each one) scored by a fixed permutation (``wide_score``), a per-unit distribution (``log_prob``) and
  statistics for the first units, dataset examples for a few, and a layer-wide ``log_prob`` figure;
* ``small``: 3 units with feature visualizations, the best of them channel 2;
* ``bare``: 5 units with statistics only (no picture to stand for the layer).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mechscope.images import png_bytes
from mechscope.store import open_store, put_png, put_rows, transaction

WIDE_UNITS = 1000
WITH_STATS = 20   # the first units of ``wide`` with statistics and a distribution plot
WITH_EXAMPLES = 7


def wide_score(channel: int) -> float:
    """The featvis score of unit ``channel`` of ``wide``: a permutation of the channels (7919 is coprime to 1000)."""
    return float((channel * 7919) % WIDE_UNITS)


def make_wide_store(path: Path) -> Path:
    gen = torch.Generator().manual_seed(0)
    with open_store(path) as store:
        figures, stats, examples = [], [], []
        key = {"model": "big", "layer": "wide"}
        for c in range(WIDE_UNITS):
            png = put_png(store, png_bytes(torch.rand(3, 24, 24, generator=gen)))
            figures.append({**key, "channel": c, "kind": "featvis", "png": png,
                            "settings": {"score": wide_score(c), "score_name": "activation", "steps": 8, "size": 24}})
        plot = put_png(store, png_bytes(torch.rand(3, 40, 60, generator=gen)))
        for c in range(WITH_STATS):
            figures.append({**key, "channel": c, "kind": "log_prob", "png": plot, "settings": {}})
            stats.append({**key, "channel": c, "count": 10, "mean": 0.5, "std": 1.0, "fraction_firing": 0.5,
                          "min": 0.0, "max": 2.0})
        examples += [{**key, "channel": c, "which": "top", "rank": 0, "dataset_index": c, "value": 1.0, "x": 0,
                      "y": 0, "png": plot} for c in range(WITH_EXAMPLES)]
        figures.append({**key, "channel": -1, "kind": "log_prob", "png": plot, "settings": {"channels": [0, 1]}})
        small = {"model": "big", "layer": "small"}
        for c, score in enumerate((0.1, 0.2, 0.9)):
            png = put_png(store, png_bytes(torch.rand(3, 24, 24, generator=gen)))
            figures.append({**small, "channel": c, "kind": "featvis", "png": png, "settings": {"score": score}})
        bare = {"model": "big", "layer": "bare"}
        stats += [{**bare, "channel": c, "count": 10, "mean": 0.0, "std": 1.0, "fraction_firing": 0.5, "min": -1.0,
                   "max": 1.0} for c in range(5)]
        with transaction(store):
            put_rows(store, "layers", [{**key, "channels": WIDE_UNITS, "settings": {"kind": "vision"}},
                                       {**small, "channels": 3, "settings": {"kind": "vision"}},
                                       {**bare, "channels": 5, "settings": {"kind": "vision"}}])
            put_rows(store, "figures", figures)
            put_rows(store, "stats", stats)
            put_rows(store, "examples", examples)
    return path


@pytest.fixture(scope="module")
def wide_store(tmp_path_factory) -> Path:
    """The folder of a store made by ``make_wide_store`` (one per test module)."""
    return make_wide_store(tmp_path_factory.mktemp("wide") / "store")
