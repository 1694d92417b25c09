"""Faceted feature visualization on an image model of the multimodal world: fit a facet from the world's own
images, then draw one unit as each facet (the paper's method, Goh et al. 2021).

``world_facets(model, layer)`` renders the same concepts in two or more modalities (``stimuli.concept_stimuli``),
reads ``layer``'s responses averaged over positions (``stimuli.layer_responses``) and fits, per modality, the
``facet_direction`` ``[U]`` separating that modality's images from the others' (difference of means by default;
with two modalities the two facets are each other's negatives).  ``faceted_render(model, unit, facets, layer)``
optimizes one image per facet with ``faceted_objective`` (``unit + weight * direction(layer, facet)``) through
``vision.featvis.render``, one seeded render per facet, so ``"picture"`` and ``"word"`` differ by the facet only.

Example (random weights, a few steps)::

    >>> import torch
    >>> from mechscope.zoo.organisms.shapes_clip_net import ShapesClipNet
    >>> net = ShapesClipNet(seed=0).eval()
    >>> facets = world_facets(net, "mixed4a", concepts=["disc", "star"], per_cell=2)
    >>> sorted(facets), facets["word"].shape, bool(torch.allclose(facets["word"], -facets["picture"]))
    (['picture', 'word'], torch.Size([112]), True)
    >>> out = faceted_render(net, "mixed4b:3", facets, "mixed4a", options=FacetedOptions(steps=2, size=32))
    >>> {name: tuple(image.shape) for name, image in out.images.items()}
    {'picture': (1, 3, 32, 32), 'word': (1, 3, 32, 32)}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from mechscope.data.shapes import SHAPE_CLASSES
from mechscope.errors import MechscopeError, unknown_name
from mechscope.vision.multimodal.facets import facet_direction, faceted_objective
from mechscope.vision.multimodal.stimuli import HELD_OUT_SEED, MODALITIES, concept_stimuli, layer_responses


@dataclass(frozen=True)
class FacetedOptions:
    """How a faceted visualization is drawn: facet ``weight`` added to the unit objective (the facet direction is
    a unit vector, so the weight is in activation units of the facet layer), optimization ``steps``, image
    ``size``, ``seed`` (the same for every facet) and ``cossim_pow`` of the facet term (Lucid's ``direction``)."""

    weight: float = 1.0
    steps: int = 64
    size: int = 64
    seed: int = 0
    cossim_pow: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.size < 8:
            raise MechscopeError(f"FacetedOptions needs steps >= 1 and size >= 8, got {self.steps} and {self.size}")


@dataclass
class FacetedImages:
    """``images[facet]`` ``[1, 3, S, S]`` in [0, 1]: the unit drawn as that facet; ``values[facet]``: the
    objective's last value (unit + weight * facet term); ``unit``, ``facet_layer`` and the ``options`` used."""

    unit: str
    facet_layer: str
    options: FacetedOptions
    images: dict[str, torch.Tensor] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)


def world_facets(model: nn.Module, layer: str, modalities: Sequence[str] = ("picture", "word"),
                 concepts: Sequence[str] = SHAPE_CLASSES, per_cell: int = 10, seed: int = HELD_OUT_SEED,
                 method: str = "mean") -> dict[str, torch.Tensor]:
    """``{modality: direction [U]}``: for each of ``modalities`` (at least two of ``MODALITIES``), the
    ``facet_direction`` of ``layer``'s position-averaged responses separating that modality's renderings of
    ``concepts`` (``per_cell`` each, world seed ``seed``) from the other modalities' renderings of the same
    concepts.  ``method``: ``"mean"`` or ``"logistic"`` (``facet_direction``)."""
    modalities = tuple(modalities)
    for m in modalities:
        if m not in MODALITIES:
            raise unknown_name("modality", m, MODALITIES)
    if len(set(modalities)) < 2:
        raise MechscopeError(f"a facet separates one modality from others: give at least two of {MODALITIES}")
    stimuli = concept_stimuli(concepts, modalities, per_cell=per_cell, seed=seed)
    acts = layer_responses(model, layer, stimuli.images)                     # [N, U]
    out = {}
    for i, m in enumerate(modalities):
        mine = stimuli.modality == i
        if not bool(mine.any()):
            raise MechscopeError(f"no {m!r} renderings of {list(concepts)} (colours cannot be sketched)")
        out[m] = facet_direction(acts[mine], acts[~mine], method=method)
    return out


def faceted_render(model: nn.Module, unit: str, facets: Mapping[str, torch.Tensor], facet_layer: str,
                   options: FacetedOptions = FacetedOptions(), progress: bool = False) -> FacetedImages:
    """Draw ``unit`` (``"layer:n"``) once per facet of ``facets`` (``{name: direction [U] of facet_layer}``, e.g.
    ``world_facets``'s), each with ``faceted_objective(unit, facet_layer, direction, options.weight)``, through
    ``vision.featvis.render`` at ``options.size`` for ``options.steps`` steps from the same seed."""
    from mechscope.vision.featvis.render import render

    if not facets:
        raise MechscopeError("facets is empty; give at least one {name: direction} (e.g. world_facets(...))")
    out = FacetedImages(unit, facet_layer, options)
    for name, direction in facets.items():
        objective = faceted_objective(unit, facet_layer, direction, weight=options.weight,
                                      cossim_pow=options.cossim_pow)
        result = render(model, objective, size=options.size, steps=options.steps, seed=options.seed,
                        progress=progress)
        out.images[name] = result.images[options.steps]
        out.values[name] = float(result.trace[-1])
    return out


__all__ = ["FacetedImages", "FacetedOptions", "faceted_render", "world_facets"]
