"""The recipe that trains the bundled "branched" organisms (``mechscope train branched --groups N``).

Multi-task training on the shapes world, as the shapes recipe does (``shapes_recipe.multitask_loss``: the sum
of the four cross-entropies, targets that do not apply ignored), on a ``BranchedNet(groups)``
(batch norm after conv2 and conv3, kept in the shipped model), AdamW with warm-up and cosine decay.  Batch
``s`` is items ``s*b … (s+1)*b - 1`` of the world ``seed``; the held-out set is items of the world
``seed + 1000``.  Brief by design (a few minutes at one thread): the
first-layer experiment needs a trained first layer, not a good classifier.  Saves
``branched_<groups>.safetensors`` and its card ``branched_<groups>.json``.

Example (a few steps, to show the call; the real recipe runs ``BranchedRecipe(groups=N)``)::

    >>> import tempfile
    >>> from mechscope.zoo.organisms.branched_recipe import BranchedRecipe, train_branched
    >>> with tempfile.TemporaryDirectory() as out:
    ...     card = train_branched(out, BranchedRecipe(groups=2, steps=2, batch_size=8, eval_items=16),
    ...                           progress=False)
    >>> card["name"], sorted(card["accuracy"])
    ('branched-2', ['boundary', 'colour', 'curve', 'shape'])
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mechscope.artefacts import atomic_write_json
from mechscope.data.shapes import ShapesDataset, WorldConfig
from mechscope.training import TrainConfig, train
from mechscope.zoo.organisms.branched_net import BranchedNet
from mechscope.zoo.organisms.shapes_recipe import HELD_OUT_OFFSET, evaluate, multitask_loss
from mechscope.zoo.organisms.cards import training_record
from mechscope.zoo.weights import save_state_dict


def weights_file(groups: int) -> str:
    """``branched_<groups>.safetensors``."""
    return f"branched_{groups}.safetensors"


def card_file(groups: int) -> str:
    """``branched_<groups>.json``."""
    return f"branched_{groups}.json"


@dataclass(frozen=True)
class BranchedRecipe:
    """Everything that determines one trained branched organism."""

    groups: int = 1
    seed: int = 0
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup: int = 40
    size: int = 64
    threads: int = 1
    eval_items: int = 1000
    world: WorldConfig = field(default_factory=WorldConfig)

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, lr=self.lr, weight_decay=self.weight_decay, warmup=self.warmup,
                           seed=self.seed, checkpoint_every=100, log_every=25)


def train_branched(out_dir: str | os.PathLike, recipe: BranchedRecipe = BranchedRecipe(), *,
                   progress: bool = True) -> dict[str, Any]:
    """Train ``BranchedNet(recipe.groups)`` into ``out_dir`` (``checkpoint.pt`` while training, resumed from when
    present; then the weights and the card).  Returns the card."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    world = WorldConfig(**{**recipe.world.as_dict(), "size": recipe.size})
    data = ShapesDataset(n=recipe.steps * recipe.batch_size, size=recipe.size, seed=recipe.seed, config=world)
    model = BranchedNet(recipe.groups)

    def batch(step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lo = step * recipe.batch_size
        return data.sample(range(lo, lo + recipe.batch_size))

    start = time.perf_counter()
    log = train(model, batch, multitask_loss, recipe.train_config(),
                checkpoint=out / f"checkpoint_{recipe.groups}.pt", progress=progress)
    model.eval()
    held_out = ShapesDataset(n=recipe.eval_items, size=recipe.size, seed=recipe.seed + HELD_OUT_OFFSET, config=world)
    accuracy = evaluate(model, held_out)
    weights = out / weights_file(recipe.groups)
    save_state_dict(model.state_dict(), weights)
    card = {
        "name": f"branched-{recipe.groups}",
        "architecture": f"BranchedNet(groups={recipe.groups}) (mechscope.zoo.organisms.branched_net): conv1 7x7/2 "
                        "24 ch (shared RGB), conv2 48 and conv3 96 grouped, average pool, 61 logits",
        "recipe": {**asdict(recipe), "world": world.as_dict()},
        "images_seen": recipe.steps * recipe.batch_size,
        "held_out": {"world_seed": recipe.seed + HELD_OUT_OFFSET, "items": recipe.eval_items},
        "accuracy": {k: round(v, 4) for k, v in accuracy.items()},
        **training_record(start, log, recipe.threads, weights),
        "log": log,
    }
    atomic_write_json(out / card_file(recipe.groups), card)
    return card
