"""The recipe that trains the bundled "shapes-clip" organism (``mechscope train shapes-clip``), and its zero-shot test.

Contrastive training on the multimodal world (``mechscope.data.multimodal``): batch ``b`` of step ``s`` is items
``s*b … (s+1)*b - 1`` of the world ``seed`` (so a resumed run sees the same pairs); the loss is CLIP's symmetric
InfoNCE over the batch's image-caption similarities, scaled by the learned temperature, with one change: a
batch holds many identical captions ("a star"), so every image whose caption is the same text counts as a
positive of that text (the target row is spread evenly over them) instead of forcing apart identical pairs.
The tokenizer is a byte-level BPE (``train_bpe``) trained on every caption the world's grammar can make
(``caption_corpus``).  The image trunk trains with batch norm, folded into the convolutions afterwards
(``fold_batchnorm``); AdamW with warm-up and cosine decay (``mechscope.training``).

**The shuffled-captions control** (``shuffle_captions=True``, bundled as ``shapes-clip-shuffled``): the same
recipe, except that item ``i`` of a batch is paired with the caption of another item of the same batch, chosen by a
fixed permutation (``shuffled_sources``): the batch's items ``s*b … (s+1)*b - 1`` are put in an order drawn from
``(seed, s)`` and each takes the caption of the next one in that order (a single cycle, so no item keeps its own
caption).  The images, their order and the captions' multiset per batch are the unshuffled run's; each image always
meets the same caption (a resumed run too), and that caption says nothing about it.  The files are then
``shapes_clip_shuffled.*`` and the card's name ``shapes-clip-shuffled``.

``zeroshot_accuracy(model, tokenizer, world, n, seed)`` classifies the ten shapes from ``n`` images per style
(shapes balanced, everything else the item's own draw), by the nearest prompt of ``class_prompts(style)`` ("a
picture of a star", "a drawing of a star", "the word star"); for ``word`` images the class is the written shape
name.  The card records it on the held-out world ``seed + 1000``.

Example (a few steps, to show the call; the real recipe runs ``ShapesClipRecipe()``)::

    >>> import tempfile
    >>> from mechscope.zoo.organisms.shapes_clip_recipe import ShapesClipRecipe, train_shapes_clip
    >>> with tempfile.TemporaryDirectory() as out:
    ...     card = train_shapes_clip(out, ShapesClipRecipe(steps=2, batch_size=8, eval_items=10), progress=False)
    >>> sorted(card["zeroshot_accuracy"])
    ['picture', 'picture+word', 'sketch', 'word']
"""

from __future__ import annotations

import json
from collections.abc import Callable
import os
import resource
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mechscope.artefacts import atomic_write_json
from mechscope.data.concepts import CONCEPT_NAMES, PROMPTS, STYLES, class_prompts, concept_captions
from mechscope.data.multimodal import MultimodalWorld, render, sample
from mechscope.data.shapes import SHAPE_CLASSES
from mechscope.data.tokenizer import Tokenizer, load_tokenizer, train_bpe
from mechscope.errors import MechscopeError
from mechscope.training import TrainConfig, train
from mechscope.zoo.organisms.cards import training_record
from mechscope.zoo.organisms.shapes_clip_net import ShapesClipConfig, ShapesClipNet
from mechscope.zoo.organisms.shapes_net import fold_batchnorm
from mechscope.zoo.weights import read_state_dict, save_state_dict, sha256_file

WEIGHTS_FILE = "shapes_clip.safetensors"
CARD_FILE = "shapes_clip.json"
TOKENIZER_FILE = "shapes_clip.tokenizer.json"
HELD_OUT_OFFSET = 1000
SHUFFLED_WEIGHTS_FILE = "shapes_clip_shuffled.safetensors"
SHUFFLED_CARD_FILE = "shapes_clip_shuffled.json"
SHUFFLED_TOKENIZER_FILE = "shapes_clip_shuffled.tokenizer.json"
_SHUFFLE_SALT = 0x5348   # keeps the caption permutation's generator apart from the world's


@dataclass(frozen=True)
class ShapesClipRecipe:
    """Everything that determines the trained organism."""

    seed: int = 0
    steps: int = 1600
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 80
    threads: int = 1
    eval_items: int = 500                   # per style, for the card's zero-shot accuracy
    tokenizer_vocab: int = 384
    checkpoint_every: int = 50
    shuffle_captions: bool = False          # the control: each image paired with another item's caption
    model: ShapesClipConfig = field(default_factory=ShapesClipConfig)
    world: MultimodalWorld = field(default_factory=MultimodalWorld)

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, lr=self.lr, weight_decay=self.weight_decay, warmup=self.warmup,
                           seed=self.seed, checkpoint_every=self.checkpoint_every, log_every=25)


def files(recipe: ShapesClipRecipe) -> tuple[str, str, str]:
    """``(weights, card, tokenizer)`` file names the recipe trains into: ``shapes_clip*`` or, for the
    shuffled-captions control, ``shapes_clip_shuffled*``."""
    if recipe.shuffle_captions:
        return SHUFFLED_WEIGHTS_FILE, SHUFFLED_CARD_FILE, SHUFFLED_TOKENIZER_FILE
    return WEIGHTS_FILE, CARD_FILE, TOKENIZER_FILE


def shuffled_sources(step: int, batch_size: int, seed: int = 0) -> list[int]:
    """The item whose caption each item of batch ``step`` receives under ``shuffle_captions``: a list ``src`` of
    length ``batch_size`` where item ``step*batch_size + k`` takes the caption of item ``src[k]``.

    A fixed permutation of the batch's own items (so the batch's captions are the same multiset), drawn from
    ``(seed, step)`` alone: the items are ordered by a seeded random permutation and each takes the caption of
    the next in that order (one cycle: no item keeps its own when ``batch_size > 1``).

        >>> src = shuffled_sources(3, 8, seed=0)
        >>> sorted(src) == list(range(24, 32)), any(s == 24 + k for k, s in enumerate(src))
        (True, False)
        >>> src == shuffled_sources(3, 8, seed=0)
        True
    """
    if batch_size < 1 or step < 0:
        raise MechscopeError(f"shuffled_sources needs step >= 0 and batch_size >= 1, got {step}, {batch_size}")
    order = np.random.default_rng([int(seed), int(step), _SHUFFLE_SALT]).permutation(batch_size)
    src = np.empty(batch_size, dtype=np.int64)
    src[order] = np.roll(order, -1)
    lo = step * batch_size
    return [lo + int(k) for k in src]


def caption_corpus() -> list[str]:
    """Every caption the world's grammar can make, the zero-shot prompts and the concept names (sorted, distinct):
    the tokenizer's training text."""
    texts = {c for name in CONCEPT_NAMES for style in STYLES for c in concept_captions(name, style)}
    texts |= {p for style in PROMPTS for p in class_prompts(style)} | set(CONCEPT_NAMES)
    return sorted(texts)


def train_caption_tokenizer(vocab_size: int = 384) -> Tokenizer:
    """The organism's BPE, trained on ``caption_corpus()`` (deterministic)."""
    return train_bpe(caption_corpus(), vocab_size=vocab_size)


class Contrastive(nn.Module):
    """The training view of a ``ShapesClipNet``: ``forward((images, tokens)) -> logits [N, N]``."""

    def __init__(self, clip: ShapesClipNet) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, tokens = inputs
        return self.clip.logits(images, tokens)


def clip_loss(logits: torch.Tensor, same: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Symmetric InfoNCE over ``logits [N, N]`` (image i, caption j) where ``same [N, N]`` (bool) marks the pairs
    whose captions are the same text (the diagonal included): each row's target is spread evenly over them.
    Metrics: image→text top-1 accuracy (the best caption is one of the image's)."""
    target = same.float() / same.float().sum(1, keepdim=True)
    loss_i = -(target * F.log_softmax(logits, 1)).sum(1).mean()
    loss_t = -(target * F.log_softmax(logits.T, 1)).sum(1).mean()
    acc = same[torch.arange(len(same)), logits.argmax(1)].float().mean()
    return (loss_i + loss_t) / 2, {"acc_i2t": float(acc)}


def _same_caption(captions: list[str]) -> torch.Tensor:
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    v = torch.tensor([ids[c] for c in captions])
    return v[:, None] == v[None, :]


@torch.no_grad()
def zeroshot_accuracy(model: Any, tokenizer: Any = None, world: MultimodalWorld = MultimodalWorld(),
                      n: int = 500, seed: int = HELD_OUT_OFFSET, batch_size: int = 250,
                      styles: tuple[str, ...] = STYLES,
                      prepare: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """Zero-shot shape accuracy per style over ``n`` items each of the world ``seed`` (shapes balanced: item ``i``
    shows ``SHAPE_CLASSES[i % 10]``; for ``word``, writes it), classified by the nearest of ``class_prompts(style)``.

    ``model``: any image-text model (``encode_image``, ``encode_text``); ``tokenizer``: passed to ``encode_text``
    when given (else the model reads strings itself); ``prepare``: applied to each batch of 64-px images before
    ``encode_image`` (e.g. resizing for a model with another input size)."""
    if n < 1:
        raise MechscopeError(f"zeroshot_accuracy needs n >= 1 items per style, got {n}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    text_kw = {} if tokenizer is None else {"tokenizer": tokenizer}
    out = {}
    for style in styles:
        prompts = F.normalize(model.encode_text(class_prompts(style), **text_kw).float().cpu(), dim=-1)
        right = 0
        for lo in range(0, n, batch_size):
            idx = list(range(lo, min(n, lo + batch_size)))
            labels = [i % len(SHAPE_CLASSES) for i in idx]
            names = [SHAPE_CLASSES[k] for k in labels]
            if style == "word":
                batch = render(None, None, "word", names, seed=seed, indices=idx, world=world)
            else:
                batch = render(names, None, style, seed=seed, indices=idx, world=world)
            images = batch.images if prepare is None else prepare(batch.images)
            img = F.normalize(model.encode_image(images.to(device)).float().cpu(), dim=-1)
            right += int(((img @ prompts.T).argmax(1) == torch.tensor(labels)).sum())
        out[style] = right / n
    model.train(was_training)
    return out


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)   # Linux: KiB


def train_shapes_clip(out_dir: str | os.PathLike, recipe: ShapesClipRecipe = ShapesClipRecipe(), *,
                      progress: bool = True, on_step: Any = None) -> dict[str, Any]:
    """Train the organism into ``out_dir``: ``shapes_clip.tokenizer.json`` first, ``checkpoint.pt`` while
    training (resumed from when present), then ``shapes_clip.safetensors`` (batch norm folded) and
    ``shapes_clip.json`` (the card); ``shapes_clip_shuffled.*`` with ``recipe.shuffle_captions``.  Returns the
    card."""
    weights_file, card_file, tokenizer_file = files(recipe)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(recipe.threads)
    tokenizer = train_caption_tokenizer(recipe.tokenizer_vocab)
    if tokenizer.vocab_size > recipe.model.d_vocab:
        raise MechscopeError(f"tokenizer_vocab {tokenizer.vocab_size} exceeds the text tower's d_vocab "
                             f"{recipe.model.d_vocab}")
    tokenizer.save(out / tokenizer_file)
    torch.manual_seed(recipe.seed)
    clip = ShapesClipNet(recipe.model, batchnorm=True, seed=recipe.seed)
    model = Contrastive(clip)

    def batch(step: int) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        lo = step * recipe.batch_size
        items = sample(range(lo, lo + recipe.batch_size), recipe.seed, recipe.world)
        captions = items.captions
        if recipe.shuffle_captions:
            captions = [captions[k - lo] for k in shuffled_sources(step, recipe.batch_size, recipe.seed)]
        return (items.images, clip.tokenize(captions, tokenizer)), _same_caption(captions)

    start = time.perf_counter()
    log = train(model, batch, clip_loss, recipe.train_config(), checkpoint=out / "checkpoint.pt",
                progress=progress, on_step=on_step)
    folded = fold_batchnorm(clip, build=lambda: ShapesClipNet(recipe.model))
    accuracy = zeroshot_accuracy(folded, tokenizer, recipe.world, recipe.eval_items, recipe.seed + HELD_OUT_OFFSET)
    weights = out / weights_file
    save_state_dict(folded.state_dict(), weights)
    card = {
        "name": "shapes-clip-shuffled" if recipe.shuffle_captions else "shapes-clip",
        "architecture": "ShapesClipNet (mechscope.zoo.organisms.shapes_clip_net): image tower = narrow "
                        "InceptionV1-style trunk (conv2d0-2, mixed3a, mixed3b, mixed4a, mixed4b; 64 px) + avgpool0 + "
                        "image_embed; text tower = causal transformer (attn_only parts) read at EOS + text_embed; "
                        "learned logit_scale",
        "recipe": {**asdict(recipe), "model": recipe.model.as_dict(), "world": recipe.world.as_dict()},
        "pairs_seen": recipe.steps * recipe.batch_size,
        "tokenizer": {"file": tokenizer_file, "vocab_size": tokenizer.vocab_size},
        "tokenizer_sha256": sha256_file(out / tokenizer_file),
        "held_out": {"world_seed": recipe.seed + HELD_OUT_OFFSET, "items_per_style": recipe.eval_items},
        "zeroshot_accuracy": {k: round(v, 4) for k, v in accuracy.items()},
        "zeroshot_prompts": dict(PROMPTS),
        "temperature": round(float(folded.scale().detach()), 3),
        "peak_memory_mb": _peak_rss_mb(),
        "peak_memory_note": "peak resident memory of the training process (ru_maxrss)",
        **training_record(start, log, recipe.threads, weights),
        "log": log,
    }
    if recipe.shuffle_captions:
        card["control"] = ("shuffled captions: each training image is paired with the caption of another item of "
                           "its batch by a fixed seeded permutation (shuffled_sources): the text says nothing "
                           "about the image, the caption distribution per batch is unchanged; zero-shot accuracy "
                           "should be chance (0.1)")
    atomic_write_json(out / card_file, card)
    return card


def recipe_from_card(card: dict[str, Any]) -> ShapesClipRecipe:
    """The ``ShapesClipRecipe`` a card records."""
    r = dict(card["recipe"])
    world = {k: tuple(v) if isinstance(v, list) else v for k, v in r.pop("world").items()}
    return replace(ShapesClipRecipe(), **{k: v for k, v in r.items() if k != "model"},
                   model=ShapesClipConfig(**r["model"]), world=MultimodalWorld(**world))


def load_shapes_clip(directory: str | os.PathLike, shuffled: bool = False) -> ShapesClipNet:
    """The organism trained into ``directory`` (its card, weights and tokenizer, sha256-checked against the card),
    in eval mode with ``model.tokenizer`` attached; ``shuffled``: the shuffled-captions control's files."""
    d = Path(directory)
    weights_file, card_file, tokenizer_file = files(ShapesClipRecipe(shuffle_captions=shuffled))
    try:
        card = json.loads((d / card_file).read_text())
    except (OSError, ValueError) as e:
        raise MechscopeError(f"cannot read the card {d / card_file}: {e}") from None
    recipe = recipe_from_card(card)
    if sha256_file(d / weights_file) != card["sha256"]:
        raise MechscopeError(f"{d / weights_file} fails the sha256 its card records; retrain or reinstall")
    model = ShapesClipNet(recipe.model)
    model.load_state_dict(read_state_dict(d / weights_file))
    model.tokenizer = load_tokenizer(d / tokenizer_file, sha256=card["tokenizer_sha256"])
    return model.eval()


def fresh_zeroshot(model: ShapesClipNet, tokenizer: Any, card: dict[str, Any], n: int = 300) -> dict[str, float]:
    """Zero-shot accuracy per style on items neither training nor the card's held-out set saw (the world
    ``seed + HELD_OUT_OFFSET + 1``): the check that shipped weights still do what the card says."""
    recipe = recipe_from_card(card)
    return zeroshot_accuracy(model, tokenizer, recipe.world, n, recipe.seed + HELD_OUT_OFFSET + 1)
