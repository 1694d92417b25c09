"""The modality table as a picture: concepts × modalities heatmaps of one unit or of several units of a layer.

Example::

    >>> import torch, tempfile, pathlib
    >>> table = torch.randn(3, 5, 4)                                   # [modalities, concepts, units]
    >>> with tempfile.TemporaryDirectory() as d:
    ...     fig = plot_modality_table(table, [0, 2], path=pathlib.Path(d) / "t.png")
    ...     (pathlib.Path(d) / "t.png").read_bytes()[:4] == b"\\x89PNG"
    True
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mechscope.errors import MechscopeError


def plot_modality_table(
    table: torch.Tensor, units: int | Sequence[int], concept_names: Sequence[str] | None = None,
    modality_names: Sequence[str] | None = None, path: str | os.PathLike | None = None, columns: int = 4,
) -> Any:
    """Heatmaps of ``table`` ``[M, C, U]`` (``modality_table``'s σ): one panel per unit, concepts down, modalities
    across, each cell annotated with its σ (empty cells blank).  All panels share one symmetric colour scale.

    ``units``: one unit index or several (e.g. a layer's multimodal units).  Saved as a PNG when ``path`` is
    given.  Returns the matplotlib ``Figure`` (not registered with pyplot).
    """
    from mechscope.plots import agg_figure, save_figure

    t = torch.as_tensor(table).detach().float().cpu()
    if t.dim() != 3:
        raise MechscopeError(f"table must be [modalities, concepts, units], got shape {tuple(t.shape)}")
    m, c, u = t.shape
    chosen = [units] if isinstance(units, int) else list(units)
    if not chosen:
        raise MechscopeError("units is empty; give at least one unit index")
    bad = [i for i in chosen if not 0 <= i < u]
    if bad:
        raise MechscopeError(f"unit indices {bad} are outside 0..{u - 1} (the table has {u} units)")
    concepts = list(concept_names) if concept_names is not None else [str(i) for i in range(c)]
    modalities = list(modality_names) if modality_names is not None else [str(i) for i in range(m)]
    if len(concepts) != c or len(modalities) != m:
        raise MechscopeError(f"give {c} concept names and {m} modality names, got {len(concepts)} and "
                             f"{len(modalities)}")
    values = t[:, :, chosen]
    finite = values[torch.isfinite(values)]
    scale = max(float(finite.abs().max()) if finite.numel() else 1.0, 1e-6)
    cols = min(columns, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig = agg_figure(cols * (0.9 + 0.55 * m), rows * (0.8 + 0.3 * c), layout="constrained")
    image = None
    for k, unit in enumerate(chosen):
        ax = fig.add_subplot(rows, cols, k + 1)
        cell = t[:, :, unit].T                                          # [C, M]
        image = ax.imshow(cell.numpy(), cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
        for (ci, mi), v in ((idx, float(cell[idx])) for idx in ((i, j) for i in range(c) for j in range(m))):
            if math.isfinite(v):
                ax.text(mi, ci, f"{v:.1f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(m), modalities, fontsize=7, rotation=45, ha="right")
        ax.set_yticks(range(c), concepts if k % cols == 0 else [""] * c, fontsize=7)
        ax.set_title(f"unit {unit}", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, shrink=0.8, label="σ of the dataset")
    if path is not None:
        save_figure(fig, Path(path))
    return fig
