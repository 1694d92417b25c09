"""Every figure kind and layer kind of a Microscope store, declared once: the builders write these names, the
up-to-date checks compare the settings keys declared here, and the pages take their captions, order and nouns
from here.

A ``FigureKind`` is a value of the ``kind`` column of the store's ``figures`` table: its caption (``None``: the
figure carries its own ``settings["caption"]``), the settings keys whose values decide whether a stored figure is
up to date (``fresh``), and whether it can be a layer grid's thumbnail.  ``FIGURE_KINDS`` is the table, in
display order: captioned kinds are shown in that order, any other kind after them by name.  A ``LayerKind`` is a
value of a ``layers`` row's ``settings["kind"]``: what a unit of such a layer is called, and its thumbnail.

Example::

    >>> FEATVIS.name, FEATVIS.fresh, figure_kind("featvis") is FEATVIS
    ('featvis', ('steps', 'size'), True)
    >>> FEATVIS.up_to_date({"steps": 8, "size": 64, "score": 1.5}, {"steps": 8, "size": 64, "seed": 3})
    True
    >>> TUNING.up_to_date({"orientations": 72, "size": 32}, {"orientations": 72, "size": 64})
    False
    >>> noun("heads"), noun("toy"), noun("anything else")
    ('head', 'instance', 'unit')
    >>> figure_order("featvis") < figure_order("upstream") < figure_order("metrics") < figure_order("summary")
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mechscope.errors import MechscopeError


@dataclass(frozen=True)
class FigureKind:
    """One kind of ``figures`` row (see the module docstring)."""

    name: str
    caption: str | None = None
    fresh: tuple[str, ...] = ()
    thumbnail: bool = False

    def up_to_date(self, stored: Any, want: Mapping[str, Any]) -> bool:
        """Whether the ``stored`` settings of a figure of this kind equal ``want`` on every ``fresh`` key
        (``want`` must give them all; other keys of either are ignored)."""
        missing = [key for key in self.fresh if key not in want]
        if missing:
            raise MechscopeError(f"the up-to-date check of {self.name!r} figures needs {missing} too")
        return isinstance(stored, dict) and all(stored.get(key) == want[key] for key in self.fresh)


@dataclass(frozen=True)
class LayerKind:
    """One kind of layer (``layers`` row ``settings["kind"]``): its units' noun and default thumbnail kind."""

    name: str
    noun: str
    thumbnail: FigureKind | None = None


_FEATVIS_FRESH = ("steps", "size")
_SCAN_FRESH = ("dataset", "examples_k", "size")
_HEAD_FRESH = ("build",)
_TOY_FRESH = ("steps", "best_of")

# vision units (``microscope.build``, ``vision.evidence.scan_store``)
FEATVIS = FigureKind("featvis", "Feature visualization", _FEATVIS_FRESH, thumbnail=True)
FEATVIS_DIVERSITY = FigureKind("featvis_diversity", "Diversity: different images that all excite the unit",
                               (*_FEATVIS_FRESH, "n"))
FEATVIS_NEGATIVE = FigureKind("featvis_negative", "Negative feature visualization: what suppresses the unit",
                              _FEATVIS_FRESH)
# attention heads (``microscope.heads``)
ATTENTION_VIEW = FigureKind("attention_view", "Attention on the sample text: hover over or click a token",
                            _HEAD_FRESH)  # layer-wide (channel -1): every head's pattern, see microscope.attention_view
ATTENTION = FigureKind("attention", "Attention pattern on sample text", _HEAD_FRESH, thumbnail=True)
HEAD_SCORES = FigureKind("head_scores", "Detector scores (previous-token, induction, duplicate-token)", _HEAD_FRESH)
COMPOSITION = FigureKind("composition", "Composition with heads of earlier layers", _HEAD_FRESH)
QK_PAIRS = FigureKind("qk_pairs", "Top QK token pairs (query ← key)", _HEAD_FRESH)
OV_PAIRS = FigureKind("ov_pairs", "Top OV token pairs (source → logit)", _HEAD_FRESH)
# toy models of superposition (``microscope.toy``)
GEOMETRY = FigureKind("geometry", "Feature geometry in the hidden space", _TOY_FRESH, thumbnail=True)
GRAM = FigureKind("gram", "WᵀW: how features overlap", _TOY_FRESH, thumbnail=True)
NORMS = FigureKind("norms", "Feature norms and superposition", _TOY_FRESH)
# dataset evidence (``vision.evidence.scan_store``, ``microscope.build``)
LOG_PROB = FigureKind("log_prob", "Distribution of activations over the dataset (log probability density)")
QUILT = FigureKind("quilt", "Quilt: dataset examples ordered by how much they activate the unit")
HISTOGRAM = FigureKind("histogram", "Histogram of activations")
# vision units, continued
TUNING = FigureKind("tuning", "Tuning curve", ("orientations", "size"))
ATTRIBUTION = FigureKind("attribution", "Attribution of the top dataset example", (*_SCAN_FRESH, "source"))
UPSTREAM = FigureKind("upstream", "Upstream: the units that feed this one (weights)", ("layer", "k", "size"))
DOWNSTREAM = FigureKind("downstream", "Downstream: the units this one feeds (weights)")
ABLATION = FigureKind("ablation", "Feature use: what ablating this unit alone costs each task (held-out accuracy)",
                      ("images", "mode"))
PARTNER = FigureKind("partner", "Universality: the most similar units of another network (activation correlation)",
                     ("model", "images", "partner_layer"))
# polysemanticity over a labelled world (``microscope.polysemantic``)
POLYSEMANTICITY = FigureKind("polysemanticity", "Polysemanticity: concept labels of the top dataset examples",
                             _SCAN_FRESH)
POLYSEMANTIC_UNITS = FigureKind("polysemantic_units", "The most polysemantic units of the layer", _SCAN_FRESH)
# multimodal units of an image-text model (``microscope.multimodal``)
_MULTIMODAL_FRESH = ("build",)
MODALITY_TABLE = FigureKind("modality_table", "Modality table: the unit's response to every concept as a picture, "
                            "a sketch and a written word (σ of the stimuli)", _MULTIMODAL_FRESH, thumbnail=True)
TEXT_SIDE = FigureKind("text_side", "Text-side maximal response: the captions best aligned with the unit's "
                       "direction in the joint embedding space", _MULTIMODAL_FRESH)
FACETED = FigureKind("faceted", "Faceted feature visualization: the unit drawn as a picture and as a word",
                     _MULTIMODAL_FRESH)
TYPOGRAPHIC = FigureKind("typographic", "Typographic attack: the unit's word written on a picture",
                         _MULTIMODAL_FRESH)
MULTIMODAL_UNITS = FigureKind("multimodal_units", "The multimodal units of the layer (picture and word agree)",
                              _MULTIMODAL_FRESH)
# MLP neurons and dictionary latents of a language model (``microscope.features``)
_FEATURE_FRESH = ("build",)
TOP_CONTEXTS = FigureKind("top_contexts", "Top contexts: the unit's activation on every token (background), its "
                          "largest token outlined", _FEATURE_FRESH, thumbnail=True)
LOGIT_EFFECTS = FigureKind("logit_effects", "Logit effects: the tokens its output direction promotes and suppresses "
                           "(through W_U, final LayerNorm ignored)", _FEATURE_FRESH)
DENSITY = FigureKind("firing_density", "Density: how often it fires, on the layer's log10 density histogram",
                     _FEATURE_FRESH)
ACTIVATION_HISTOGRAM = FigureKind("activation_histogram", "Histogram of its activations over the scanned tokens",
                                  _FEATURE_FRESH)
DECODER_NEURONS = FigureKind("decoder_neurons", "The neurons that carry it: largest |decoder weights| of the "
                             "latent", _FEATURE_FRESH)
LATENTS_WRITING = FigureKind("latents_writing", "The latents that write this neuron most (|W_dec| column)",
                             _FEATURE_FRESH)
LATENTS_READING = FigureKind("latents_reading", "The latents that read this neuron most (|W_enc| row)",
                             _FEATURE_FRESH)
FEATURE_LIST = FigureKind("feature_list", "Every unit in one line: search by token text or index",
                          _FEATURE_FRESH)  # layer-wide (channel -1): the list the layer page shows
# toy models: figures that carry their own caption
METRICS = FigureKind("metrics", None, _TOY_FRESH)
SUMMARY = FigureKind("summary", None, _TOY_FRESH)

FIGURE_KINDS: tuple[FigureKind, ...] = (
    FEATVIS, FEATVIS_DIVERSITY, FEATVIS_NEGATIVE, ATTENTION_VIEW, ATTENTION, HEAD_SCORES, COMPOSITION, QK_PAIRS,
    OV_PAIRS, GEOMETRY, GRAM, NORMS, LOG_PROB, QUILT, HISTOGRAM, TUNING, ATTRIBUTION, UPSTREAM, DOWNSTREAM, ABLATION,
    PARTNER, POLYSEMANTICITY, POLYSEMANTIC_UNITS, MODALITY_TABLE, TEXT_SIDE, FACETED, TYPOGRAPHIC, MULTIMODAL_UNITS,
    TOP_CONTEXTS, LOGIT_EFFECTS, DENSITY, ACTIVATION_HISTOGRAM, DECODER_NEURONS, LATENTS_WRITING, LATENTS_READING,
    FEATURE_LIST, METRICS, SUMMARY)
"""Every figure kind a builder of this package writes, in display order."""

CAPTIONS: dict[str, str] = {k.name: k.caption for k in FIGURE_KINDS if k.caption is not None}
"""Caption of each captioned figure kind; figures are shown in this order, other kinds after them by name."""

HEAD_KINDS: tuple[FigureKind, ...] = (ATTENTION, HEAD_SCORES, QK_PAIRS, OV_PAIRS)
"""The figures of every attention head (plus ``COMPOSITION`` for heads of layers >= 1)."""

FEATURE_KINDS: tuple[FigureKind, ...] = (TOP_CONTEXTS, LOGIT_EFFECTS, DENSITY, ACTIVATION_HISTOGRAM)
"""The figures of every MLP neuron and dictionary latent (plus ``DECODER_NEURONS`` for a latent,
``LATENTS_WRITING`` / ``LATENTS_READING`` for a neuron of a layer with a dictionary)."""

VISION = LayerKind("vision", "unit", FEATVIS)
HEADS = LayerKind("heads", "head", ATTENTION)
TOY = LayerKind("toy", "instance", GEOMETRY)
NEURONS = LayerKind("mlp_neurons", "neuron", TOP_CONTEXTS)
LATENTS = LayerKind("dictionary", "latent", TOP_CONTEXTS)
LAYER_KINDS: dict[str, LayerKind] = {k.name: k for k in (VISION, HEADS, TOY, NEURONS, LATENTS)}
"""Every layer kind, by name."""

_BY_NAME = {k.name: k for k in FIGURE_KINDS}
_ORDER = {name: i for i, name in enumerate(CAPTIONS)}


def figure_kind(name: str) -> FigureKind:
    """The declared kind called ``name``; ``MechscopeError`` listing the kinds when there is none."""
    if name not in _BY_NAME:
        raise MechscopeError(f"unknown figure kind {name!r}; kinds: {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def caption(name: str) -> str:
    """The caption of figure kind ``name`` (the name itself for a kind without one)."""
    return CAPTIONS.get(name, name)


def figure_order(name: str) -> tuple[int, str]:
    """Sort key of a figure kind on a page: captioned kinds in table order, then the others by name."""
    return (_ORDER[name], "") if name in _ORDER else (len(_ORDER), name)


def noun(layer_kind: str) -> str:
    """What a unit of a layer of kind ``layer_kind`` is called (``"unit"`` for an unknown or absent kind)."""
    known = LAYER_KINDS.get(layer_kind)
    return known.noun if known else VISION.noun


__all__ = ["FigureKind", "LayerKind", "FIGURE_KINDS", "CAPTIONS", "HEAD_KINDS", "LAYER_KINDS", "figure_kind",
           "caption", "figure_order", "noun", "FEATVIS", "FEATVIS_DIVERSITY", "FEATVIS_NEGATIVE", "ATTENTION_VIEW",
           "ATTENTION", "HEAD_SCORES", "COMPOSITION", "QK_PAIRS", "OV_PAIRS", "GEOMETRY", "GRAM", "NORMS", "LOG_PROB",
           "QUILT", "HISTOGRAM", "TUNING", "ATTRIBUTION", "UPSTREAM", "DOWNSTREAM", "ABLATION", "PARTNER", "POLYSEMANTICITY",
           "POLYSEMANTIC_UNITS", "MODALITY_TABLE", "TEXT_SIDE", "FACETED", "TYPOGRAPHIC", "MULTIMODAL_UNITS", "METRICS", "SUMMARY", "VISION", "HEADS", "TOY",
           "TOP_CONTEXTS", "LOGIT_EFFECTS", "DENSITY", "ACTIVATION_HISTOGRAM", "DECODER_NEURONS", "LATENTS_WRITING",
           "LATENTS_READING", "FEATURE_LIST", "FEATURE_KINDS", "NEURONS", "LATENTS"]
