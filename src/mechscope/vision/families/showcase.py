"""The curve detectors of a layer, shown: found from radial tuning curves, the most sharply tuned one per sector
of orientation picked, drawn as a row of polar tuning plots and a row of feature visualizations (``mechscope
demo``'s first part).

``show_curve_detectors(model, layer, out)`` writes ``out/{prefix}_{layer}_radial_tuning.png`` and
``out/{prefix}_{layer}_curve_detectors_featvis.png`` and returns a ``CurveDetectorShowcase`` with the detectors
(default and strict criteria), the picks and the files.

Example (random weights: few or no detectors, so only the finding runs)::

    >>> import tempfile
    >>> from mechscope.zoo.registry import load
    >>> net = load("shapes", weights="random", device="cpu")
    >>> with tempfile.TemporaryDirectory() as out:
    ...     s = show_curve_detectors(net, "conv2d0", out, n_orientations=8, steps=1)
    >>> s.layer, s.n_units, len(s.picks) <= 8
    ('conv2d0', 32, True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from mechscope.vision.families.tuning import CurveDetectors, RadialTuning, curve_detectors, radial_tuning_curve

STRICT = {"min_preference": 2.0, "max_width": 90.0}   # curves >= 2x lines, FWHM <= 90 deg


@dataclass(frozen=True)
class CurveDetectorShowcase:
    """``found``/``strict``: the layer's detectors by the default and the strict criteria; ``picks``: the
    channels shown (``found.sharpest(sectors)``); ``files``: the pictures written (none when no detector)."""

    layer: str
    n_units: int
    found: CurveDetectors
    strict: CurveDetectors
    picks: list[int]
    files: list[Path]

    def rows(self) -> list[dict[str, Any]]:
        """One row per pick: ``{"unit": "layer:c", "preferred_deg", "fwhm_deg", "curve_preference"}``."""
        out = []
        for unit in self.picks:
            i = self.found.units.index(unit)
            out.append({"unit": f"{self.layer}:{unit}", "preferred_deg": self.found.preferred[i],
                        "fwhm_deg": self.found.width[i], "curve_preference": self.found.curve_preference[i]})
        return out


def tuning_row_figure(tuning: RadialTuning, channels: list[int]) -> Any:
    """One polar tuning plot per channel, in a row, without tick labels."""
    import numpy as np

    from mechscope.plots import new_figure

    fig, axes = new_figure(1, len(channels), subplot_kw={"projection": "polar"}, figsize=(2.4 * len(channels), 2.8))
    for ax, unit in zip(list(np.atleast_1d(axes)), channels, strict=True):
        tuning.plot(unit, ax=ax)
        ax.set_xticklabels([])
        ax.set_yticklabels([])
    fig.tight_layout()
    return fig


def show_curve_detectors(model: nn.Module, layer: str, out_dir: str | os.PathLike, *, sectors: int = 8,
                         steps: int = 128, seed: int = 0, n_orientations: int = 180, size: int = 64,
                         prefix: str = "shapes") -> CurveDetectorShowcase:
    """Find ``layer``'s curve detectors (``radial_tuning_curve`` at ``n_orientations``), pick the most sharply
    tuned one of each of ``sectors`` sectors of orientation, and draw them: their polar tuning plots and their
    feature visualizations (``steps`` steps at ``size`` px, ``seed``)."""
    from mechscope.images import grid, save_png
    from mechscope.plots import save_figure
    from mechscope.vision.featvis.render import render_units

    tuning = radial_tuning_curve(model, layer, n_orientations=n_orientations, progress=False)
    found = curve_detectors(tuning)
    strict = curve_detectors(tuning, **STRICT)
    picks = found.sharpest(sectors) if found.units else []
    files: list[Path] = []
    if picks:
        out = Path(out_dir)
        files.append(save_figure(tuning_row_figure(tuning, picks), out / f"{prefix}_{layer}_radial_tuning.png"))
        result = render_units(model, [f"{layer}:{u}" for u in picks], size=size, steps=steps, seed=seed,
                              progress=False)
        path = out / f"{prefix}_{layer}_curve_detectors_featvis.png"
        save_png(grid(result.final, ncols=len(picks)), path)
        files.append(path)
    return CurveDetectorShowcase(layer, len(tuning.channels), found, strict, picks, files)
