"""What ``mechscope attribution`` and ``mechscope weights`` compute and draw, as functions a notebook calls too:
a result with its JSON payload, its figures and ``save(out)``.

* ``attribution_report(model, unit, source, image)``: ``UNIT``'s activation on one image attributed to
  ``SOURCE``'s channels and positions (``attribution.attribute``), a map and the top contributors;
* ``weights_report(model, source, unit, size)``: the expanded weights from ``SOURCE`` to ``UNIT``, the strongest
  channels as heatmaps and, optionally, a one-sided NMF of them as RGB.

Files are named by ``units.file_stem`` (``mixed3b:45@8,8`` → ``mixed3b_45_at_8_8``) and written by
``artefacts.atomic_write_json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mechscope.artefacts import atomic_write_json
from mechscope.units import file_stem


@dataclass(frozen=True)
class AttributionReport:
    """``attribution``: the ``Attribution``; ``payload``: ``{"unit", "source", "value", "top": [{"unit",
    "contribution"}], ...}`` (with whatever ``about`` the caller added, e.g. the dataset and item)."""

    attribution: Any
    payload: dict[str, Any]
    top: int = 10

    def save(self, out: Path) -> list[Path]:
        """``{unit}_from_{source}.json``, ``..._map.png`` and ``..._top.png`` under ``out``."""
        from mechscope.plots import new_figure, save_figure
        from mechscope.vision.circuits.attribution import attribution_map_plot, top_contributors_plot

        base = Path(out) / f"{file_stem(self.payload['unit'])}_from_{self.payload['source']}"
        fig, ax = new_figure(figsize=(3.4, 3.4))
        attribution_map_plot(self.attribution, ax=ax)
        written = [save_figure(fig, Path(f"{base}_map.png"))]
        fig, ax = new_figure(figsize=(4, 3))
        top_contributors_plot(self.attribution, k=self.top, ax=ax)
        written.append(save_figure(fig, Path(f"{base}_top.png")))
        written.append(atomic_write_json(Path(f"{base}.json"), self.payload))
        return written


def attribution_report(model: nn.Module, unit: str, source: str, image: Tensor, *, top: int = 10,
                       about: dict[str, Any] | None = None) -> AttributionReport:
    """Attribute ``unit``'s activation on ``image [1, 3, H, W]`` to ``source``'s channels and positions
    (activation x gradient); the ``top`` contributors in the payload (``about`` is merged in after ``source``)."""
    from mechscope.vision.circuits.attribution import attribute

    attr = attribute(model, image, unit, source)
    rows = [{"unit": f"{source}:{c}", "contribution": v} for c, v in attr.top(top)]
    payload = {"unit": unit, "source": source, **(about or {}), "value": float(attr.total[0]), "top": rows}
    return AttributionReport(attr, payload, top)


@dataclass(frozen=True)
class WeightsReport:
    """``weights``: the expanded weights ``[C_source, kh, kw]`` from ``source`` to ``unit``; ``strongest``: the
    (at most 8) source channels with the largest weight norm, strongest first; ``norms``: their norms."""

    source: str
    unit: str
    weights: Tensor
    strongest: list[int]
    norms: list[float]
    nmf: int = 3

    @property
    def payload(self) -> dict[str, Any]:
        return {"source": self.source, "unit": self.unit, "shape": list(self.weights.shape),
                "strongest": [{"unit": f"{self.source}:{c}", "norm": n} for c, n in zip(self.strongest, self.norms)]}

    def figure(self) -> Any:
        """Heatmaps of the strongest channels' kernels."""
        from mechscope.plots import new_figure
        from mechscope.vision.circuits.weights import kernel_heatmap

        fig, ax = new_figure(figsize=(1.4 * len(self.strongest), 1.8))
        kernel_heatmap(self.weights[self.strongest], ax=ax)
        ax.set_title(f"{self.source} -> {self.unit}: strongest channels {self.strongest}", fontsize=8)
        return fig

    def save(self, out: Path) -> list[Path]:
        """``{unit}_from_{source}_weights.png``, ``..._nmf.png`` (when ``nmf``) and ``..._weights.json``."""
        from mechscope.images import save_png
        from mechscope.plots import save_figure
        from mechscope.vision.circuits.nmf import nmf_rgb

        base = Path(out) / f"{file_stem(self.unit)}_from_{self.source}"
        written = [save_figure(self.figure(), Path(f"{base}_weights.png"))]
        if self.nmf:
            written.append(save_png(nmf_rgb(self.weights, n=self.nmf).image, Path(f"{base}_nmf.png")))
        written.append(atomic_write_json(Path(f"{base}_weights.json"), self.payload))
        return written


def weights_report(model: nn.Module, source: str, unit: str, size: int, *, nmf: int = 3) -> WeightsReport:
    """Expanded weights from ``source`` to ``unit`` (through bottlenecks, linearized model, input ``size`` px),
    ordered by the norm of each source channel's kernel (8 strongest kept for the picture and the payload)."""
    from mechscope.vision.circuits.weights import expanded_weights

    w = expanded_weights(model, source, unit, size)
    strength = w.flatten(1).norm(dim=1)
    order = strength.argsort(descending=True)[:8].tolist()
    return WeightsReport(source, unit, w, order, [float(strength[c]) for c in order], nmf)
