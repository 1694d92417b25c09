"""The multimodal analyses run on an image–text model and the multimodal world: the wiring the CLI verbs and the
``reproduce`` claims call.  The pure modules beside this one take tensors; these functions render the world's
stimuli, run the model and hand the tensors over.

A model qualifies when it has ``encode_image(images [N, 3, S, S] in [0, 1]) -> [N, D]``, ``encode_text(list[str])
-> [N, D]`` (``shapes-clip`` with its attached tokenizer; the ``clip-*`` models through open_clip) and named image
layers (``mechscope.capture``).  The world's 64-px images are resized to a model's ``spec.image_size`` when it has
one (the open_clip CLIPs).

- ``unit_modality_report``: the modality table of a layer and its multimodal units (picture vs word, picture vs
  sketch), JSON-ready rows per unit;
- ``zeroshot``: zero-shot shape accuracy per style (nearest of ``class_prompts(style)``);
- ``typographic_attack``: pictures of shape A with shape B's name written on them, the flip rate A→B and its two
  controls (random letter strings of B's length; A's own name);
- ``unit_text_directions`` / ``text_side_report``: a unit's direction in the joint space and the candidate texts
  (``candidate_texts``: every caption, prompt and concept name of the grammar) it aligns with best, and whether
  the best one names the unit's strongest picture concept (``names_concept``);
- ``superordinate_report``: ``superordinate.superordinate_units`` on a layer's picture table.

Example::

    >>> from mechscope.vision.multimodal.organism import names_concept, candidate_texts
    >>> names_concept("a photo of a red star", "star"), names_concept("a photo of a red star", "ring")
    (True, False)
    >>> len(candidate_texts()) > 500
    True
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mechscope.data.concepts import CONCEPT_NAMES, GROUPS, PROMPTS, STYLES, class_prompts, concept_captions
from mechscope.data.multimodal import render
from mechscope.data.shapes import SHAPE_CLASSES
from mechscope.errors import MechscopeError, unknown_name
from mechscope.vision.multimodal.stimuli import HELD_OUT_SEED, MODALITIES, concept_stimuli, layer_responses
from mechscope.vision.multimodal.superordinate import SuperordinateUnits, superordinate_units
from mechscope.vision.multimodal.table import MultimodalUnits, modality_table, multimodal_units
from mechscope.vision.multimodal.text_search import search_text, tokenizer_words
from mechscope.vision.multimodal.text_side import (linear_head_directions, regression_directions,
                                                   text_side_response)
from mechscope.vision.multimodal.typographic import FlipRate, random_letter_strings, typographic_flip_rate
from mechscope.zoo.organisms.shapes_clip_recipe import zeroshot_accuracy

IMAGE_TEXT_MODELS = ("shapes-clip", "clip-rn50", "clip-rn101", "clip-rn50x4", "clip-rn50x16", "clip-rn50x64")
ZEROSHOT_SEED = 3000     # world seeds no training or card used: the organism trains on 0, its card reads 1000/1001
TYPOGRAPHIC_SEED = 3100


def require_image_text(model: Any, name: str | None = None) -> None:
    """Refuse a model without a text tower, naming the image–text models."""
    if not (callable(getattr(model, "encode_image", None)) and callable(getattr(model, "encode_text", None))):
        what = f"{name!r}" if name else type(model).__name__
        raise MechscopeError(f"{what} has no text tower (encode_image and encode_text); the multimodal analyses "
                             f"need an image-text model: {', '.join(IMAGE_TEXT_MODELS)}")


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def fit_images(model: Any, images: Tensor) -> Tensor:
    """``images [N, 3, 64, 64]`` resized (bilinear) to the model's ``spec.image_size`` when it has one."""
    size = getattr(getattr(model, "spec", None), "image_size", None)
    if size and images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images


@torch.no_grad()
def encode_texts(model: Any, texts: Sequence[str], batch_size: int = 256) -> Tensor:
    """L2-normalised text embeddings ``[T, D]`` (float32, CPU)."""
    require_image_text(model)
    out = [model.encode_text(list(texts[lo: lo + batch_size])).float().cpu() for lo in range(0, len(texts), batch_size)]
    return F.normalize(torch.cat(out), dim=-1)


@torch.no_grad()
def encode_images(model: Any, images: Tensor, batch_size: int = 250) -> Tensor:
    """L2-normalised image embeddings ``[N, D]`` (float32, CPU) of world images ``[N, 3, 64, 64]``."""
    require_image_text(model)
    was = model.training
    model.eval()
    dev = _device(model)
    out = [model.encode_image(fit_images(model, images[lo: lo + batch_size]).to(dev)).float().cpu()
           for lo in range(0, len(images), batch_size)]
    model.train(was)
    return F.normalize(torch.cat(out), dim=-1)


def candidate_texts() -> list[str]:
    """Every caption of the world's grammar, the zero-shot prompts of every style and the concept names (sorted,
    distinct): the texts a unit's text-side response is chosen among."""
    texts = {c for name in CONCEPT_NAMES for style in STYLES for c in concept_captions(name, style)}
    texts |= {p for style in PROMPTS for p in class_prompts(style)} | set(CONCEPT_NAMES)
    return sorted(texts)


def names_concept(text: str, concept: str) -> bool:
    """Whether ``text`` names ``concept``: the name is one of its words."""
    return concept in text.split()


# ----------------------------------------------------------------------------------------------- modality table
@dataclass(frozen=True)
class ModalityReport:
    """A layer's modality table ``[M, C, U]`` (σ of the stimuli) and its multimodal tests, keyed
    ``"picture-word"`` / ``"picture-sketch"`` (those the modalities allow)."""

    layer: str
    concepts: tuple[str, ...]
    modalities: tuple[str, ...]
    margin: float
    table: Tensor
    tests: dict[str, MultimodalUnits] = field(default_factory=dict)

    def count(self, pair: str = "picture-word") -> int:
        return self.tests[pair].count

    def picture_table(self) -> Tensor:
        """``[C, U]``: the picture row of the table."""
        return self.table[self.modalities.index("picture")]

    def rows(self) -> list[dict[str, Any]]:
        """Per unit: strongest concept and its σ in each modality, and per pair whether it is multimodal."""
        best = torch.nan_to_num(self.table, nan=float("-inf")).max(1)
        out = []
        for u in range(self.table.shape[2]):
            row: dict[str, Any] = {"unit": u}
            row["strongest"] = {m: self.concepts[int(best.indices[i, u])] for i, m in enumerate(self.modalities)}
            row["sigma"] = {m: round(float(best.values[i, u]), 4) for i, m in enumerate(self.modalities)}
            row["multimodal"] = {k: bool(t.multimodal[u]) for k, t in self.tests.items()}
            row["margin"] = {k: [round(float(v), 4) for v in t.margin[:, u]] for k, t in self.tests.items()}
            out.append(row)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "concepts": list(self.concepts), "modalities": list(self.modalities),
                "margin": self.margin, "counts": {k: t.count for k, t in self.tests.items()},
                "multimodal_units": {k: t.units() for k, t in self.tests.items()}, "units": self.rows()}


def unit_modality_report(model: nn.Module, layer: str, concepts: Sequence[str] = SHAPE_CLASSES,
                         modalities: Sequence[str] = MODALITIES, per_cell: int = 20, margin: float = 0.25,
                         seed: int = HELD_OUT_SEED) -> ModalityReport:
    """Modality table of ``layer`` over ``per_cell`` stimuli of each (concept, modality) and the multimodal test
    at ``margin`` σ between picture and word, and picture and sketch (when those modalities are given)."""
    if "picture" not in modalities:
        raise MechscopeError(f"modalities must include 'picture' (the others are tested against it), got "
                             f"{list(modalities)}")
    s = concept_stimuli(concepts, modalities, per_cell, seed)
    acts = layer_responses(model, layer, fit_images(model, s.images))
    table = modality_table(acts, s.concept, s.modality, len(s.concepts), len(s.modalities))
    tests = {f"picture-{m}": multimodal_units(table, ("picture", m), margin, s.modalities)
             for m in ("word", "sketch") if m in s.modalities}
    return ModalityReport(layer, s.concepts, s.modalities, float(margin), table, tests)


# ----------------------------------------------------------------------------------------------- zero-shot
@torch.no_grad()
def zeroshot(model: nn.Module, styles: Sequence[str] = STYLES, n: int = 200, seed: int = ZEROSHOT_SEED,
             batch_size: int = 250) -> dict[str, float]:
    """Zero-shot shape accuracy per style over ``n`` items of the world ``seed`` (item ``i`` shows
    ``SHAPE_CLASSES[i % 10]``; ``word`` writes it; ``picture+word`` writes the shape's own name), classified by the
    nearest of ``class_prompts(style)``: the card's ``zeroshot_accuracy``, for any image–text model (its images
    resized to the model's input size)."""
    require_image_text(model)
    for st in styles:
        if st not in STYLES:
            raise unknown_name("style", st, STYLES)
    if n < 1:
        raise MechscopeError(f"zeroshot needs n >= 1 items per style, got {n}")
    return zeroshot_accuracy(model, n=n, seed=seed, batch_size=batch_size, styles=tuple(styles),
                             prepare=functools.partial(fit_images, model))


# ----------------------------------------------------------------------------------------------- typographic
@dataclass(frozen=True)
class TypographicReport:
    """The attack (word B on a picture of A, scored for B), the random-letter control (a string of B's length,
    scored for B) and the own-word control (A's name on A; no flip target)."""

    attack: FlipRate
    random_letters: FlipRate
    own_word: FlipRate
    n: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        def clean(d: dict) -> dict:
            return {k: (None if isinstance(v, float) and v != v else v) for k, v in d.items()}
        return {"n": self.n, "seed": self.seed, "attack": clean(self.attack.as_dict()),
                "random_letters": clean(self.random_letters.as_dict()), "own_word": clean(self.own_word.as_dict())}


@torch.no_grad()
def typographic_attack(model: nn.Module, n: int = 300, seed: int = TYPOGRAPHIC_SEED) -> TypographicReport:
    """``n`` pictures (item ``i`` shows ``SHAPE_CLASSES[i % 10]`` in its own colour) attacked with another shape's
    name B (drawn per item from a generator seeded by ``seed``), with the controls; zero-shot over
    ``class_prompts("picture")``."""
    require_image_text(model)
    if n < 1:
        raise MechscopeError(f"typographic_attack needs n >= 1 items, got {n}")
    k = len(SHAPE_CLASSES)
    rng = np.random.default_rng(seed)
    true = [i % k for i in range(n)]
    target = [(a + int(rng.integers(1, k))) % k for a in true]
    idx = list(range(n))
    shapes = [SHAPE_CLASSES[a] for a in true]
    words = [SHAPE_CLASSES[b] for b in target]
    letters = random_letter_strings(n, [len(w) for w in words], seed=seed, exclude=CONCEPT_NAMES)
    prompts = encode_texts(model, class_prompts("picture"))

    def logits(**kw: Any) -> Tensor:
        return encode_images(model, render(shapes, None, kw.pop("style"), seed=seed, indices=idx, **kw).images) @ \
            prompts.T

    clean = logits(style="picture")
    y, b = torch.tensor(true), torch.tensor(target)
    attack = typographic_flip_rate(clean, logits(style="picture+word", word=words), y, b)
    random = typographic_flip_rate(clean, logits(style="picture+word", text=letters), y, b)
    own = typographic_flip_rate(clean, logits(style="picture+word"), y, torch.full((n,), -1))
    return TypographicReport(attack, random, own, n, seed)


# ----------------------------------------------------------------------------------------------- text side
def _linear_path_directions(model: nn.Module, layer: str) -> Tensor | None:
    """``[U, D]`` when ``layer`` reaches the joint space linearly (the embedding itself, or the pooled layer
    feeding the linear ``image_embed`` head); ``None`` when its directions need a regression over images."""
    head = getattr(model, "image_embed", None)
    if not isinstance(head, nn.Linear):
        return None
    if layer == "image_embed":
        return torch.eye(head.out_features)
    stages = getattr(model, "stages", ())
    if layer == "avgpool0" or (stages and layer == stages[-1]):
        return linear_head_directions(head.weight).cpu()
    return None


def unit_text_directions(model: nn.Module, layer: str, images: Tensor | None = None) -> Tensor:
    """Unit directions ``[U, D]`` of ``layer`` in the joint space: for the embedding layer itself
    (``image_embed``) the basis vectors; for a layer whose global mean feeds a linear head (``shapes-clip``'s
    ``mixed4b`` and ``avgpool0`` -> ``image_embed``) the head's columns; otherwise the ridge regression of the
    image embeddings of ``images`` (world images; needed then) on the layer's pooled activations."""
    exact = _linear_path_directions(model, layer)
    if exact is not None:
        return exact
    if images is None:
        raise MechscopeError(f"layer {layer!r} has no linear path to the embedding: pass images= (world images) so "
                             "its directions can be found by regression")
    acts = layer_responses(model, layer, fit_images(model, images))
    with torch.no_grad():
        dev = _device(model)
        emb = torch.cat([model.encode_image(fit_images(model, images[lo: lo + 250]).to(dev)).float().cpu()
                         for lo in range(0, len(images), 250)])
    return regression_directions(acts, emb)


def text_side_report(directions: Tensor, text_embeddings: Tensor, texts: Sequence[str],
                     concepts: Sequence[str], k: int = 3) -> list[dict[str, Any]]:
    """Per direction ``[U, D]`` and its concept (``concepts [U]``): the ``k`` best texts, and whether the best
    names the concept.  ``text_embeddings [T, D]`` are those of ``texts``."""
    if len(concepts) != directions.shape[0]:
        raise MechscopeError(f"one concept per direction: {len(concepts)} concepts for {directions.shape[0]} "
                             "directions")
    rows = []
    for d, c in zip(directions, concepts):
        r = text_side_response(d, text_embeddings, texts, k=k)
        rows.append({"concept": c, "top": r.rows(), "names_concept": names_concept(r.texts[0], c)})
    return rows


def unit_text_search(model: nn.Module, unit: str, max_words: int = 4, beam: int = 8, k: int = 5,
                     vocabulary: Sequence[str] | None = None) -> dict[str, Any]:
    """Text feature visualization of ``unit`` (``layer:channel``): the ``k`` best of the world's texts
    (``candidate_texts``, ranked) and the ``k`` best free texts of up to ``max_words`` words found by
    ``search_text`` from ``vocabulary`` (default: the model tokenizer's words, ``tokenizer_words``), seeded with
    the ranked ones, so the search scores at least as well.  A layer without a linear path to the embedding takes
    its directions by regression on the world's held-out stimuli."""
    from mechscope.units import parse_unit, validate

    require_image_text(model)
    u = parse_unit(unit)
    validate(model, u.layer)
    directions = _linear_path_directions(model, u.layer)
    if directions is None:     # no linear path: the regression over the world's held-out stimuli
        images = concept_stimuli(SHAPE_CLASSES, MODALITIES, 20, HELD_OUT_SEED).images
        directions = unit_text_directions(model, u.layer, images)
    if not 0 <= u.channel < directions.shape[0]:
        raise MechscopeError(f"{u.layer} has units 0..{directions.shape[0] - 1}; got {u.channel}")
    if vocabulary is None:
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None or not hasattr(tokenizer, "decode"):
            raise MechscopeError("this model's tokenizer cannot list its words: pass vocabulary= (a list of words)")
        vocabulary = tokenizer_words(tokenizer)
    d = directions[u.channel]
    texts = candidate_texts()
    ranked = text_side_response(d, encode_texts(model, texts), texts, k=k)
    found = search_text(lambda t: encode_texts(model, t), d, vocabulary, max_words=max_words, beam=beam, k=k,
                        seeds=ranked.texts)
    return {"unit": f"{u.layer}:{u.channel}", "ranked": ranked.rows(),
            "searched": [{"text": t, "score": float(s)} for t, s in zip(found.texts, found.scores)],
            "vocabulary": len(vocabulary), "max_words": max_words, "beam": beam}


def picture_selective_units(report: ModalityReport, k: int) -> tuple[list[int], list[str]]:
    """The ``k`` units with the largest picture margin (strongest minus runner-up concept, σ), best first, and
    their strongest picture concepts."""
    pic = torch.nan_to_num(report.picture_table(), nan=float("-inf"))
    top = pic.topk(2, dim=0)
    lead = top.values[0] - top.values[1]
    order = lead.argsort(descending=True)[:k].tolist()
    return order, [report.concepts[int(top.indices[0, u])] for u in order]


def superordinate_report(report: ModalityReport, margin: float = 0.25) -> SuperordinateUnits:
    """``superordinate_units`` on the picture row of a modality report whose concepts include every group
    member (the default ``SHAPE_CLASSES`` do)."""
    return superordinate_units(report.picture_table(), report.concepts, GROUPS, margin)
