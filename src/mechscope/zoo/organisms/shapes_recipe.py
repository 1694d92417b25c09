"""The recipe that trains the bundled "shapes" organism (``mechscope train shapes``).

Multi-task training on the shapes world (``mechscope.data.shapes``): the sum of the four cross-entropies
(shape, curve, boundary, colour; targets that do not apply to an image are ignored) on a ``ShapesNet`` with batch
norm, AdamW with warm-up and cosine decay; batch ``b`` of step ``s`` is items ``s*b … (s+1)*b - 1`` of the world
``seed`` (so a resumed run sees the same images), the held-out set is items of the world ``seed + 1000``.
Afterwards batch norm is folded into the convolutions and the model is saved as safetensors with a JSON card.

Example (a few steps, to show the call; the real recipe runs ``ShapesRecipe()``)::

    >>> import tempfile
    >>> from mechscope.zoo.organisms.shapes_recipe import ShapesRecipe, train_shapes
    >>> with tempfile.TemporaryDirectory() as out:
    ...     card = train_shapes(out, ShapesRecipe(steps=2, batch_size=8, eval_items=16), progress=False)
    >>> sorted(card["accuracy"])
    ['boundary', 'colour', 'curve', 'shape']
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mechscope.artefacts import atomic_write_json
from mechscope.errors import MechscopeError
from mechscope.data.shapes import IGNORE, TASKS, ShapesDataset, WorldConfig
from mechscope.training import TrainConfig, train
from mechscope.zoo.organisms.shapes_net import ShapesNet, fold_batchnorm, split_logits
from mechscope.zoo.organisms.shapes_resnet import ShapesResNet
from mechscope.zoo.organisms.shapes_vgg import ShapesVGG
from mechscope.zoo.organisms.cards import training_record
from mechscope.zoo.weights import save_state_dict

WEIGHTS_FILE = "shapes.safetensors"
CARD_FILE = "shapes.json"
HELD_OUT_OFFSET = 1000


@dataclass(frozen=True)
class Architecture:
    """A network trained by this recipe: its zoo ``name``, ``build(batchnorm=...)``, bundled file names and a
    one-line description for the card."""

    name: str
    build: Any
    weights_file: str
    card_file: str
    description: str


ARCHITECTURES: dict[str, Architecture] = {
    "inception": Architecture("shapes", ShapesNet, WEIGHTS_FILE, CARD_FILE,
                              "ShapesNet (mechscope.zoo.organisms.shapes_net): InceptionV1-style, 64 px, "
                              "conv2d0-2, mixed3a, mixed3b, mixed4a, mixed4b, 61 logits"),
    "vgg": Architecture("shapes-vgg", ShapesVGG, "shapes_vgg.safetensors", "shapes_vgg.json",
                        "ShapesVGG (mechscope.zoo.organisms.shapes_vgg): plain 3x3 conv stack with max-pools, 64 px, "
                        "conv1_1, conv2_1-2, conv3_1-2, conv4_1, 61 logits"),
    "resnet": Architecture("shapes-resnet", ShapesResNet, "shapes_resnet.safetensors", "shapes_resnet.json",
                           "ShapesResNet (mechscope.zoo.organisms.shapes_resnet): small ResNet, basic blocks, 64 px, "
                           "stem, block1-4, 61 logits"),
}


@dataclass(frozen=True)
class ShapesRecipe:
    """Everything that determines the trained organism."""

    seed: int = 0
    steps: int = 800
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup: int = 60
    size: int = 64
    threads: int = 1                        # what every bundled card records (1 thread)
    eval_items: int = 2000
    tasks: tuple[str, ...] = tuple(TASKS)   # the heads trained (an ablation trains fewer)
    architecture: str = "inception"         # a key of ARCHITECTURES
    world: WorldConfig = field(default_factory=WorldConfig)

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, lr=self.lr, weight_decay=self.weight_decay, warmup=self.warmup,
                           seed=self.seed, checkpoint_every=50, log_every=25)


def architecture_recipe(architecture: str, seed: int = 0) -> ShapesRecipe:
    """The recipe of the bundled ``shapes-vgg`` / ``shapes-resnet`` organisms: the shapes recipe with a quarter of
    its images (600 steps of 64; ~4-5 CPU minutes at one thread), so that each trains in minutes."""
    if architecture not in ARCHITECTURES:
        raise MechscopeError(f"unknown architecture {architecture!r}; choose from {list(ARCHITECTURES)}")
    return ShapesRecipe(seed=seed, steps=600, batch_size=64, warmup=40, architecture=architecture)


def multitask_loss(logits: torch.Tensor, labels: dict[str, torch.Tensor],
                   tasks: tuple[str, ...] = tuple(TASKS)) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over ``tasks`` of the cross-entropy on the items where the task applies; accuracies as metrics."""
    total = logits.new_zeros(())
    metrics: dict[str, float] = {}
    for task, out in split_logits(logits).items():
        if task not in tasks:
            continue
        target = labels[task]
        valid = target != IGNORE
        if valid.any():
            total = total + F.cross_entropy(out, target, ignore_index=IGNORE)
            metrics[f"acc_{task}"] = float((out.argmax(1)[valid] == target[valid]).float().mean())
    return total, metrics


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: ShapesDataset, batch_size: int = 250) -> dict[str, float]:
    """Accuracy of each task over ``dataset`` (items where the task applies)."""
    model.eval()
    right = {t: 0 for t in TASKS}
    total = {t: 0 for t in TASKS}
    for _, images, labels in dataset.labelled_batches(batch_size):
        for task, out in split_logits(model(images)).items():
            valid = labels[task] != IGNORE
            right[task] += int((out.argmax(1)[valid] == labels[task][valid]).sum())
            total[task] += int(valid.sum())
    return {t: right[t] / max(1, total[t]) for t in TASKS}


def train_shapes(out_dir: str | os.PathLike, recipe: ShapesRecipe = ShapesRecipe(), *, progress: bool = True,
                 on_step: Any = None, device: str | None = None) -> dict[str, Any]:
    """Train the organism (``recipe.architecture``: a key of ``ARCHITECTURES``) into ``out_dir``:
    ``checkpoint.pt`` while training (resumed from when present), then ``shapes.safetensors`` (batch norm folded;
    ``shapes_vgg.safetensors`` etc. for other architectures) and ``shapes.json`` (the card).  Returns the card.
    ``device``: where to train (``training.train``; default the CPU, as every bundled card was trained); the
    images are drawn on the CPU (the same batches on any device), the model comes back to the CPU to be folded,
    evaluated and saved."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    world = WorldConfig(**{**recipe.world.as_dict(), "size": recipe.size})
    data = ShapesDataset(n=recipe.steps * recipe.batch_size, size=recipe.size, seed=recipe.seed, config=world)
    if recipe.architecture not in ARCHITECTURES:
        raise MechscopeError(f"unknown architecture {recipe.architecture!r}; choose from {list(ARCHITECTURES)}")
    arch = ARCHITECTURES[recipe.architecture]
    model = arch.build(batchnorm=True).to(memory_format=torch.channels_last)

    def batch(step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lo = step * recipe.batch_size
        return data.sample(range(lo, lo + recipe.batch_size))

    start = time.perf_counter()
    unknown = [t for t in recipe.tasks if t not in TASKS]
    if unknown or not recipe.tasks:
        raise MechscopeError(f"unknown tasks {unknown or recipe.tasks!r}; choose from {list(TASKS)}")

    def loss(logits: torch.Tensor, labels: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return multitask_loss(logits, labels, recipe.tasks)

    log = train(model, batch, loss, recipe.train_config(), checkpoint=out / "checkpoint.pt",
                progress=progress, on_step=on_step,
                prepare=lambda x: x.contiguous(memory_format=torch.channels_last), device=device)
    model.to("cpu")
    folded = fold_batchnorm(model.to(memory_format=torch.contiguous_format))
    held_out = ShapesDataset(n=recipe.eval_items, size=recipe.size, seed=recipe.seed + HELD_OUT_OFFSET, config=world)
    accuracy = evaluate(folded, held_out)
    weights = out / arch.weights_file
    save_state_dict(folded.state_dict(), weights)
    card = {
        "name": arch.name,
        "architecture": arch.description,
        "recipe": {**asdict(recipe), "world": world.as_dict()},
        "images_seen": recipe.steps * recipe.batch_size,
        "held_out": {"world_seed": recipe.seed + HELD_OUT_OFFSET, "items": recipe.eval_items},
        "accuracy": {k: round(v, 4) for k, v in accuracy.items()},
        **training_record(start, log, recipe.threads, weights),
        "log": log,
    }
    atomic_write_json(out / arch.card_file, card)
    return card


def fresh_accuracy(model: torch.nn.Module, card: dict[str, Any], n: int = 500) -> dict[str, float]:
    """Accuracy of each task on ``n`` images that neither training nor the card's held-out set saw (the world
    ``card["recipe"]["seed"] + HELD_OUT_OFFSET + 1``): the check that bundled weights still do what the card says."""
    return evaluate(model, ShapesDataset(n=n, seed=card["recipe"]["seed"] + HELD_OUT_OFFSET + 1))
