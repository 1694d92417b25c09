"""Concept stimuli of the multimodal world and a layer's responses to them: the rows ``modality_table`` reads.

Every concept of the world (``data.concepts.CONCEPTS``: ten shapes, seven colours, three superordinate groups) is
shown in each *modality* that can show it, ``per_cell`` times:

* ``picture`` -- a shape: the shape in a random colour; a colour: a random shape in that colour; a group: a random
  member shape;
* ``sketch`` -- a shape or a group member as an outline drawing (colours cannot be sketched: those cells are
  empty and ``modality_table`` leaves them NaN);
* ``word`` -- the concept's name written into the image (any concept).

Items are pure functions of ``(seed, index)`` like the world's; the default seed is held out from training
(the organism trains on seed 0's items).

Example::

    >>> from mechscope.vision.multimodal.stimuli import concept_stimuli
    >>> s = concept_stimuli(["disc", "red", "round"], per_cell=2)
    >>> s.images.shape, s.concept.tolist(), s.modality.tolist()
    (torch.Size([16, 3, 64, 64]), [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2], [0, 0, 1, 1, 2, 2, 0, 0, 2, 2, 0, 0, 1, 1, 2, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from mechscope.data.concepts import CONCEPT_NAMES, CONCEPTS, COLOURS, GROUPS
from mechscope.data.multimodal import MultimodalWorld, render
from mechscope.data.shapes import SHAPE_CLASSES
from mechscope.errors import MechscopeError, unknown_name

MODALITIES = ("picture", "sketch", "word")
HELD_OUT_SEED = 2000   # the organism trains on seed 0 and records its zero-shot accuracy on seeds 1000/1001
_KIND = dict(CONCEPTS)


@dataclass
class ConceptStimuli:
    """``images [N, 3, S, S]`` with ``concept [N]`` (index into ``concepts``) and ``modality [N]`` (index into
    ``modalities``); ``shape [N]`` the shape drawn (-1 for words) and ``colour [N]`` its colour or ink."""

    images: Tensor
    concept: Tensor
    modality: Tensor
    shape: Tensor
    colour: Tensor
    concepts: tuple[str, ...]
    modalities: tuple[str, ...]


def _members(concept: str) -> tuple[str, ...]:
    kind = _KIND[concept]
    if kind == "shape":
        return (concept,)
    if kind == "group":
        return tuple(GROUPS[concept])
    return SHAPE_CLASSES


def concept_stimuli(concepts: Sequence[str] = CONCEPT_NAMES, modalities: Sequence[str] = MODALITIES,
                    per_cell: int = 20, seed: int = HELD_OUT_SEED,
                    world: MultimodalWorld = MultimodalWorld()) -> ConceptStimuli:
    """``per_cell`` renderings of each concept in each modality that can show it (colours have no sketch), concept
    by concept, modality by modality.  Shapes of colour and group cells and colours of shape cells are drawn
    from a generator seeded by ``seed``; every image is the world's item ``(seed, index)`` otherwise."""
    concepts, modalities = tuple(concepts), tuple(modalities)
    for c in concepts:
        if c not in _KIND:
            raise unknown_name("concept", c, CONCEPT_NAMES)
    for m in modalities:
        if m not in MODALITIES:
            raise unknown_name("modality", m, MODALITIES)
    if per_cell < 1 or not concepts or not modalities:
        raise MechscopeError(f"concept_stimuli needs concepts, modalities and per_cell >= 1 (got {per_cell})")
    rng = np.random.default_rng(seed)
    batches, concept_ids, modality_ids = [], [], []
    index = 0
    for ci, c in enumerate(concepts):
        kind = _KIND[c]
        for mi, m in enumerate(modalities):
            if m == "sketch" and kind == "colour":
                continue
            idx = list(range(index, index + per_cell))
            index += per_cell
            if m == "word":
                b = render(None, None, "word", c, seed=seed, indices=idx, world=world)
            else:
                members = _members(c)
                shapes = [members[int(k)] for k in rng.integers(0, len(members), per_cell)]
                colours = None if m == "sketch" else (
                    c if kind == "colour" else [COLOURS[int(k)] for k in rng.integers(0, len(COLOURS), per_cell)])
                b = render(shapes, colours, m, seed=seed, indices=idx, world=world)
            batches.append(b)
            concept_ids += [ci] * per_cell
            modality_ids += [mi] * per_cell
    return ConceptStimuli(torch.cat([b.images for b in batches]), torch.tensor(concept_ids),
                          torch.tensor(modality_ids), torch.cat([b.shape for b in batches]),
                          torch.cat([b.colour for b in batches]), concepts, modalities)


@torch.no_grad()
def layer_responses(model: nn.Module, layer: str, images: Tensor, batch_size: int = 250,
                    reduce: str = "mean") -> Tensor:
    """Each unit's response to each image: ``[N, U]``, the layer's output ``[N, U, H, W]`` averaged (``"mean"``)
    or maximised (``"max"``) over positions (a ``[N, U]`` output as it is)."""
    from mechscope.capture import capture

    if reduce not in ("mean", "max"):
        raise unknown_name("reduce", reduce, ("mean", "max"))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for lo in range(0, len(images), batch_size):
        act = capture(model, images[lo: lo + batch_size].to(device), layer)[layer]
        if act.dim() == 4:
            act = act.flatten(2).mean(2) if reduce == "mean" else act.flatten(2).amax(2)
        out.append(act.float().cpu())
    model.train(was_training)
    return torch.cat(out)
