"""Feature use on the organisms of the shapes world: what each of the world's tasks loses when units are
ablated (the Curve Detectors paper's "feature use" evidence), against random sets of the same size.

- ``shapes_held_out(model_name, n)``: images and labels of the world a bundled organism's card holds out;
- ``task_ablation``: a chosen set of a layer's units ablated (``zero`` or ``mean``) vs ``draws`` seeded random
  same-size sets of the layer's other units; per task the drop of held-out accuracy, the share of random sets
  whose drop is below the chosen set's, and a permutation p-value;
- ``unit_ablation_table``: every unit of a layer ablated alone, ``[C, tasks]`` drops (the Microscope shows a
  unit's row on its page);
- ``ablation_plot``: the chosen set's drops against the random sets', per task.

The organism must end in the shapes world's four-task logits (``ShapesNet``'s ``split_logits`` layout); the
ablations use ``vision.circuits.ablation`` (the layers before a ``ShapesNet`` stage run once).

Example::

    >>> from mechscope.zoo.registry import load
    >>> net = load("shapes", device="cpu")
    >>> images, labels = shapes_held_out("shapes", 40)
    >>> result = task_ablation(net, "mixed3b", [20, 35], images, labels, draws=3)
    >>> sorted(result.drop), len(result.random_drops), 0.0 <= result.share_below["curve"] <= 1.0
    (['boundary', 'colour', 'curve', 'shape'], 3, True)
    >>> unit_ablation_table(net, "mixed4b", images, labels).shape        # [C, tasks]
    torch.Size([256, 4])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from mechscope.data.shapes import TASKS, ShapesDataset
from mechscope.errors import MechscopeError
from mechscope.plots import new_figure, save_figure
from mechscope.vision.circuits.ablation import ablation_drops, channel_means, random_unit_sets
from mechscope.zoo.organisms.shapes_net import NUM_LOGITS, task_accuracy

MEAN_IMAGES = 256


@dataclass(frozen=True)
class TaskAblation:
    """A unit set's ablation against random same-size sets (see the module docstring).  Per task:
    ``baseline`` accuracy, ``drop`` (baseline − ablated), ``random_drops`` (one dict per random set),
    ``share_below`` (share of random sets dropping strictly less) and ``p_value`` ((1 + #random ≥) / (1 + draws))."""

    layer: str
    units: list[int]
    mode: str
    images: int
    baseline: dict[str, float]
    drop: dict[str, float]
    random_drops: list[dict[str, float]]
    share_below: dict[str, float]
    p_value: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def shapes_held_out(model_name: str, n: int = 500) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``n`` images ``[n, 3, 64, 64]`` and labels of the held-out world named by the bundled organism's card."""
    from mechscope.zoo.registry import bundled_card

    card = bundled_card(model_name)
    if "held_out" not in card:
        raise MechscopeError(f"{model_name}'s card names no held-out world; feature use needs a shapes-world organism")
    return ShapesDataset(n, seed=card["held_out"]["world_seed"]).sample(range(n))


def _check_model(model: nn.Module, images: torch.Tensor) -> None:
    with torch.no_grad():
        width = model(images[:1]).shape[-1]
    if width != NUM_LOGITS:
        raise MechscopeError(f"the model gives {width} outputs, not the shapes world's {NUM_LOGITS} task logits; "
                             "feature use by task accuracy needs a shapes-world organism")


def _means(model: nn.Module, layer: str, mode: str, seed: int, n: int = MEAN_IMAGES) -> torch.Tensor | None:
    if mode != "mean":
        return None
    train_x, _ = ShapesDataset(n, seed=seed).sample(range(n))
    return channel_means(model, layer, [train_x])


@torch.no_grad()
def task_ablation(model: nn.Module, layer: str, units: Sequence[int], images: torch.Tensor,
                  labels: dict[str, torch.Tensor], *, mode: Literal["zero", "mean"] = "zero", draws: int = 20,
                  seed: int = 0, means_seed: int = 0, mean_images: int = MEAN_IMAGES) -> TaskAblation:
    """Ablate ``units`` of ``layer`` and ``draws`` seeded random same-size sets of its other units; held-out
    accuracy drops per task on ``images`` ``[B, 3, H, W]`` with ``labels``.  Mean ablation uses per-position
    means over ``mean_images`` images of the world ``means_seed`` (the training world of seed 0)."""
    units = sorted(set(int(u) for u in units))
    if not units:
        raise MechscopeError("task_ablation needs at least one unit to ablate")
    _check_model(model, images)
    width = model.layer_table[layer].channels if hasattr(model, "layer_table") else None
    if width is None:
        raise MechscopeError("task_ablation needs a model with a layer_table (the layer's width)")
    sets = {"chosen": units}
    sets.update({f"random{i}": s for i, s in
                 enumerate(random_unit_sets(width, len(units), draws, exclude=units, seed=seed))})
    base, drops = ablation_drops(model, layer, sets, images, lambda out: task_accuracy(out, labels), mode=mode,
                                 means=_means(model, layer, mode, means_seed, mean_images))
    chosen = drops.pop("chosen")
    random = list(drops.values())
    share = {t: sum(r[t] < chosen[t] for r in random) / max(1, len(random)) for t in TASKS}
    p = {t: (1 + sum(r[t] >= chosen[t] for r in random)) / (1 + len(random)) for t in TASKS}
    return TaskAblation(layer, units, mode, len(images), base, chosen, random, share, p)


@torch.no_grad()
def unit_ablation_table(model: nn.Module, layer: str, images: torch.Tensor, labels: dict[str, torch.Tensor], *,
                        mode: Literal["zero", "mean"] = "zero", channels: Sequence[int] | None = None,
                        means_seed: int = 0) -> torch.Tensor:
    """Each unit of ``layer`` (or each of ``channels``) ablated alone: ``[len(channels), len(TASKS)]`` held-out
    accuracy drops (``TASKS`` order; all the layer's units by default)."""
    _check_model(model, images)
    units = list(range(model.layer_table[layer].channels)) if channels is None else [int(c) for c in channels]
    _, drops = ablation_drops(model, layer, {str(c): [c] for c in units}, images,
                              lambda out: task_accuracy(out, labels), mode=mode,
                              means=_means(model, layer, mode, means_seed))
    return torch.tensor([[drops[str(c)][t] for t in TASKS] for c in units]).reshape(len(units), len(TASKS))


def ablation_plot(results: Sequence[TaskAblation], path: str | os.PathLike, *, title: str = "") -> Path:
    """One panel per result: each task's drop for the chosen units (red) and the random sets (grey)."""
    fig, axes = new_figure(1, len(results), figsize=(4.5 * len(results), 3.2), sharey=True, squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        for i, t in enumerate(TASKS):
            ax.scatter([i] * len(r.random_drops), [d[t] for d in r.random_drops], s=9, c="0.6",
                       label="random sets" if i == 0 else None)
            ax.scatter([i], [r.drop[t]], s=40, c="tab:red", marker="D", label="chosen units" if i == 0 else None)
        ax.axhline(0, lw=0.5, c="k")
        ax.set_xticks(range(len(TASKS)), list(TASKS))
        ax.set_title(title or f"{r.mode} ablation of {len(r.units)} {r.layer} units", fontsize=9)
    axes[0][0].set_ylabel("held-out accuracy drop")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, Path(path), dpi=80, tight=False)


def save_task_ablations(results: Sequence[TaskAblation], out: str | os.PathLike, stem: str = "ablation") -> list[Path]:
    """``out/<stem>.json`` (every result, random sets included) and ``out/<stem>.png`` (``ablation_plot``)."""
    from mechscope.artefacts import atomic_write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [atomic_write_json(out / f"{stem}.json", [r.as_dict() for r in results]),
            ablation_plot(results, out / f"{stem}.png")]


def save_unit_ablation_table(table: torch.Tensor, layer: str, out: str | os.PathLike, *, top: int = 10,
                             stem: str = "ablation_each") -> list[Path]:
    """``out/<stem>.json`` (``{unit: {task: drop}}`` for every unit of ``layer``) and ``out/<stem>.png``: per
    task, the ``top`` units whose ablation alone costs it the most."""
    from mechscope.artefacts import atomic_write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {f"{layer}:{c}": {t: round(float(v), 4) for t, v in zip(TASKS, table[c], strict=True)}
            for c in range(table.shape[0])}
    fig, axes = new_figure(1, len(TASKS), figsize=(3.2 * len(TASKS), 3.0), squeeze=False)
    for j, (ax, task) in enumerate(zip(axes[0], TASKS, strict=True)):
        order = table[:, j].argsort(descending=True)[:top]
        ax.barh(range(len(order)), table[order, j].tolist(), color="tab:red")
        ax.set_yticks(range(len(order)), [str(int(c)) for c in order], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{task}: costliest {layer} units", fontsize=8)
        ax.set_xlabel("accuracy drop", fontsize=7)
    fig.tight_layout()
    return [atomic_write_json(out / f"{stem}.json", rows), save_figure(fig, out / f"{stem}.png", dpi=80, tight=False)]
