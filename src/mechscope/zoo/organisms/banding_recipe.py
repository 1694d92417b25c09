"""The recipe that trains the bundled "banding" organisms (``mechscope train banding VARIANT``).

One ``BandingNet`` (``banding_net.py``) per variant (``VARIANTS``), all on the layout world
(``mechscope.data.layout``), same seed, steps and optimiser; only the pooling head or the data change:

* ``gap`` — global average pooling;  ``gap-rotated`` — the same on images turned 90°;
* ``avg-x`` — average pooling over x only;  ``max`` — global max pooling.

Loss: the sum of the three tasks' cross-entropies (place, horizon, kind); AdamW with warm-up and cosine decay
(``mechscope.training``); batch ``b`` of step ``s`` is items ``s*b … (s+1)*b - 1`` of world ``seed``; the held-out
set is world ``seed + 1000``.  Weights saved as ``banding_<variant>.safetensors`` (dashes as underscores) with
a JSON card (recipe, train seconds, machine, held-out accuracy, sha256).

Example (a few steps, to show the call; the real recipe runs ``BandingRecipe()``)::

    >>> import tempfile
    >>> from mechscope.zoo.organisms.banding_recipe import BandingRecipe, train_banding
    >>> with tempfile.TemporaryDirectory() as out:
    ...     card = train_banding(out, "max", BandingRecipe(steps=2, batch_size=8, eval_items=16), progress=False)
    >>> card["name"], sorted(card["accuracy"])
    ('banding-max', ['horizon', 'kind', 'place'])
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mechscope.artefacts import atomic_write_json
from mechscope.data.layout import TASKS, LayoutConfig, LayoutDataset
from mechscope.errors import MechscopeError
from mechscope.training import TrainConfig, train
from mechscope.zoo.organisms.banding_net import VARIANTS, BandingNet, file_stem, split_logits
from mechscope.zoo.organisms.cards import training_record
from mechscope.zoo.weights import save_state_dict

HELD_OUT_OFFSET = 1000


@dataclass(frozen=True)
class BandingRecipe:
    """Everything that determines a trained variant (besides the variant itself)."""

    seed: int = 0
    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-3
    warmup: int = 50
    threads: int = 1
    eval_items: int = 2000

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, lr=self.lr, weight_decay=self.weight_decay, warmup=self.warmup,
                           seed=self.seed, checkpoint_every=250, log_every=100)


def layout_loss(logits: torch.Tensor, labels: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of the tasks' cross-entropies; accuracies as metrics."""
    total = logits.new_zeros(())
    metrics: dict[str, float] = {}
    for task, out in split_logits(logits).items():
        total = total + F.cross_entropy(out, labels[task])
        metrics[f"acc_{task}"] = float((out.argmax(1) == labels[task]).float().mean())
    return total, metrics


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: LayoutDataset, batch_size: int = 250) -> dict[str, float]:
    """Accuracy of each task over ``dataset``."""
    model.eval()
    right = dict.fromkeys(TASKS, 0)
    for _, images, labels in dataset.labelled_batches(batch_size):
        for task, out in split_logits(model(images)).items():
            right[task] += int((out.argmax(1) == labels[task]).sum())
    return {t: right[t] / len(dataset) for t in TASKS}


def train_banding(out_dir: str | os.PathLike, variant: str, recipe: BandingRecipe = BandingRecipe(), *,
                  progress: bool = True) -> dict[str, Any]:
    """Train ``variant`` into ``out_dir``: ``checkpoint_<variant>.pt`` while training (resumed from when present),
    then ``<file_stem>.safetensors`` and ``<file_stem>.json`` (the card).  Returns the card."""
    if variant not in VARIANTS:
        raise MechscopeError(f"unknown banding variant {variant!r}; choose from {list(VARIANTS)}")
    head, rotate = VARIANTS[variant]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    world = LayoutConfig()
    data = LayoutDataset(n=recipe.steps * recipe.batch_size, seed=recipe.seed, config=world, rotate=rotate)
    model = BandingNet(head)

    def batch(step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lo = step * recipe.batch_size
        return data.sample(range(lo, lo + recipe.batch_size))

    start, cpu = time.perf_counter(), time.process_time()
    log = train(model, batch, layout_loss, recipe.train_config(), checkpoint=out / f"checkpoint_{variant}.pt",
                progress=progress)
    held_out = LayoutDataset(n=recipe.eval_items, seed=recipe.seed + HELD_OUT_OFFSET, config=world, rotate=rotate)
    accuracy = evaluate(model, held_out)
    weights = out / f"{file_stem(variant)}.safetensors"
    save_state_dict(model.state_dict(), weights)
    card = {
        "name": f"banding-{variant}",
        "architecture": f"BandingNet(head={head!r}) (mechscope.zoo.organisms.banding_net): conv1-conv4 3x3, "
                        f"32 px, 9 logits",
        "world": {"module": "mechscope.data.layout", "rotate_90": rotate, **world.as_dict()},
        "recipe": {"variant": variant, **asdict(recipe)},
        "train_cpu_seconds_this_session": round(time.process_time() - cpu, 1),   # wall/CPU: how busy the machine was
        "images_seen": recipe.steps * recipe.batch_size,
        "held_out": {"world_seed": recipe.seed + HELD_OUT_OFFSET, "items": recipe.eval_items},
        "accuracy": {k: round(v, 4) for k, v in accuracy.items()},
        **training_record(start, log, recipe.threads, weights),
    }
    atomic_write_json(out / f"{file_stem(variant)}.json", card)
    return card
