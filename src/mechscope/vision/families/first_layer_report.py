"""What ``mechscope first-layer`` computes and draws: a model's first RGB convolution — its kernels grouped by
branch, each unit's colour score, the branch colour split against random partitions, and the SVD of the
kernels with each component's colour and frequency score (``first_layer.py``, ``branches.first_layer_svd``).

* ``first_conv(model)``: the model's first ``Conv2d`` with three input channels, and its name.
* ``first_layer_report(model, groups)``: the payload, ``figure()`` and ``save(out)`` (``first_layer.json``,
  ``first_layer.png``).  ``groups`` defaults to the model's ``groups`` attribute (the branched organisms) or 1.
* ``draw_components(axes, svd, k)``: the first ``k`` SVD components as RGB images (also used by the claim).

Example (random weights)::

    >>> import tempfile
    >>> from pathlib import Path
    >>> from mechscope.zoo.organisms.branched_net import BranchedNet
    >>> rep = first_layer_report(BranchedNet(groups=2))
    >>> rep.payload["layer"], rep.payload["groups"], len(rep.payload["branches"]["branch_means"])
    ('conv1', 2, 2)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     sorted(p.name for p in rep.save(Path(d)))
    ['first_layer.json', 'first_layer.png']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mechscope.artefacts import atomic_write_json
from mechscope.errors import MechscopeError
from mechscope.vision.families.branches import FirstLayerSVD, first_layer_svd
from mechscope.vision.families.first_layer import branch_colour_split, kernel_colour_scores, svd_order

TOP = 4  # SVD components tested and drawn


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """``(module name, module)`` of the first ``Conv2d`` of ``model`` that reads three channels."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            return name, module
    raise MechscopeError(f"{type(model).__name__} has no convolution reading RGB (3 input channels)")


def _rgb(kernel: torch.Tensor) -> Any:
    """``[3, kh, kw]`` -> ``[kh, kw, 3]`` numpy in [0, 1], zero at 0.5, scaled by the largest magnitude."""
    k = kernel.detach().double()
    return (0.5 + 0.5 * k / k.abs().max().clamp_min(1e-12)).permute(1, 2, 0).numpy()


def draw_components(axes: Any, svd: FirstLayerSVD, k: int = TOP) -> None:
    """Draw SVD components ``0..k-1`` into ``axes`` (one each), titled with explained share, colour, frequency."""
    for i, ax in enumerate(axes[:k]):
        ax.imshow(_rgb(svd.components[i]), interpolation="nearest")
        ax.set_title(f"SV{i + 1} {float(svd.explained[i]):.0%}\nc {svd.colour[i]:.2f} f {svd.frequency[i]:.2f}",
                     fontsize=5)
        ax.axis("off")


@dataclass(frozen=True)
class FirstLayerReport:
    """The payload of one model's first layer and the weights it was computed from (``weight [C, 3, kh, kw]``)."""

    payload: dict[str, Any]
    weight: torch.Tensor
    svd: FirstLayerSVD

    def figure(self) -> Any:
        """Kernels in rows by branch (titled with their colour score), then the top SVD components."""
        from mechscope.plots import new_figure

        groups, c = self.payload["groups"], self.weight.shape[0]
        per = c // groups
        cols = max(per, TOP)
        fig, axes = new_figure(groups + 1, cols, figsize=(0.75 * cols, 0.95 * (groups + 1)), squeeze=False)
        scores = self.payload["unit_colour_scores"]
        for g in range(groups):
            for j in range(cols):
                ax = axes[g][j]
                ax.axis("off")
                if j < per:
                    unit = g * per + j
                    ax.imshow(_rgb(self.weight[unit]), interpolation="nearest")
                    ax.set_title(f"{unit}: {scores[unit]:.2f}", fontsize=5)
            axes[g][0].text(-0.6, 0.5, f"branch {g}", transform=axes[g][0].transAxes, ha="right", va="center",
                            fontsize=6)
        for ax in axes[groups]:
            ax.axis("off")
        draw_components(axes[groups], self.svd, min(TOP, cols))
        fig.suptitle(f"{self.payload['layer']}: kernels by branch (colour score), top SVD components", fontsize=7)
        return fig

    def save(self, out: Path) -> list[Path]:
        from mechscope.plots import save_figure

        out = Path(out)
        return [atomic_write_json(out / "first_layer.json", self.payload),
                save_figure(self.figure(), out / "first_layer.png")]


def first_layer_report(model: nn.Module, groups: int | None = None, *, draws: int = 1000) -> FirstLayerReport:
    """The first RGB convolution of ``model``: colour scores, the split between ``groups`` branches (contiguous
    channel blocks) against ``draws`` random partitions (only when ``groups >= 2``), and its SVD."""
    name, conv = first_conv(model)
    groups = int(groups if groups is not None else getattr(model, "groups", 1))
    weight = conv.weight.detach().float().cpu()
    if groups < 1 or weight.shape[0] % groups:
        raise MechscopeError(f"{name} has {weight.shape[0]} units, which {groups} branches cannot split evenly")
    svd = first_layer_svd(weight)
    branches = branch_colour_split(weight, groups, draws=draws).as_dict() if groups >= 2 else None
    payload = {"layer": name, "shape": list(weight.shape), "groups": groups,
               "unit_colour_scores": [round(float(s), 4) for s in kernel_colour_scores(weight)],
               "branches": branches, "svd": svd_order(svd, min(TOP, len(svd.colour))).as_dict()}
    return FirstLayerReport(payload, weight, svd)
