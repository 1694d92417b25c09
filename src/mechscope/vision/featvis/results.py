"""What a render returns: images at threshold steps, the objective's trace, and for many units their labels.

Results display inline in notebooks (``_repr_png_``) and save with one call (``save``, ``save_dir``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mechscope.artefacts import atomic_write_bytes
from mechscope.errors import MechscopeError
from mechscope.images import png_bytes, save_png
from mechscope.units import VisLabel, file_stem


@dataclass
class RenderResult:
    """Images at each threshold step (``{step: [batch, 3, H, W]}``) and the objective's value at every step."""

    images: dict[int, torch.Tensor]
    trace: list[float] = field(default_factory=list)

    @property
    def final(self) -> torch.Tensor:
        """The images at the last threshold, ``[batch, 3, H, W]``."""
        return self.images[max(self.images)]

    def save(self, path: str | os.PathLike) -> Path:
        """Save the final image (a grid for a batch) as PNG."""
        return save_png(self.final, path)

    def _repr_png_(self) -> bytes:
        return png_bytes(self.final)


@dataclass
class UnitsResult(RenderResult):
    """``render_units``'s result: batch element ``i`` shows ``labels[i]`` (its unit, copy and sign: the ``str`` of
    a ``units.VisLabel``).

    ``activations[i]`` is that element's objective on its final image, seen without transforms.
    """

    units: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    activations: list[float] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def save_dir(self, out: str | os.PathLike) -> list[Path]:
        """Write ``out/<unit>[_neg][_k].png`` per image and ``out/<unit>.json`` per unit (settings, final
        activations, trace).  ``:`` and ``@`` in unit names become ``_`` and ``_at_``."""
        out = Path(out)
        written = []
        for i, label in enumerate(self.labels):
            written.append(save_png(self.final[i], out / f"{file_stem(label)}.png"))
        for unit in self.units:
            mine = [i for i, label in enumerate(self.labels) if _unit_of(label) == unit]
            record = {"unit": unit, "settings": self.settings, "images": [f"{file_stem(self.labels[i])}.png" for i in mine],
                      "final_activation": [self.activations[i] for i in mine], "trace": self.trace}
            path = out / f"{file_stem(unit)}.json"
            atomic_write_bytes(path, json.dumps(record, indent=2).encode())
            written.append(path)
        return written


def _unit_of(label: str) -> str | None:
    """The unit a ``render_units`` label shows; ``None`` for other labels (an interpolation's ``a->b@t``)."""
    try:
        return str(VisLabel.parse(label).unit)
    except MechscopeError:
        return None


__all__ = ["RenderResult", "UnitsResult", "file_stem"]
