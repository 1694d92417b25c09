"""Multimodal neurons (Goh et al. 2021, "Multimodal Neurons in Artificial Neural Networks"), as pure functions
over tensors, so that they run on any image–text model: the organism ``shapes-clip``, or CLIP through open_clip.

- ``table``: ``modality_table`` (per modality, concept, unit: σ of the dataset) and ``multimodal_units``;
- ``text_side``: unit directions in the joint space (``linear_head_directions``, ``gradient_directions``,
  ``regression_directions``, or ``unit_directions`` to pick one) and ``text_side_response``;
- ``text_search``: ``search_text`` (text feature visualization: a beam search over words for the free text that
  best aligns with a unit) and ``tokenizer_words``;
- ``arithmetic``: ``sparse_concept_decomposition``, ``concept_atlas``, ``plot_concept_atlas``;
- ``typographic``: ``typographic_flip_rate``, ``random_letter_strings``;
- ``facets``: ``facet_direction``, ``faceted_objective``;
- ``faceted``: ``world_facets`` (facets fitted on the world's images) and ``faceted_render`` (a unit drawn per facet);
- ``figures``: ``plot_modality_table``;
- ``superordinate``: ``superordinate_units`` (units answering every member of a group of concepts above every
  non-member);
- ``organism``: the analyses run on an image–text model and the multimodal world (modality report, zero-shot,
  typographic attack with its controls, text-side response, superordinate report);
- ``stimuli``: ``concept_stimuli`` (every concept of the multimodal world in each modality) and
  ``layer_responses`` (a layer's ``[N, U]`` responses to them) - the one module here that renders and runs a model.

Apart from ``stimuli`` and ``organism``, nothing here renders or runs a model; callers pass activations, embeddings and logits.

Example::

    >>> from mechscope.vision.multimodal import modality_table, multimodal_units
    >>> callable(modality_table) and callable(multimodal_units)
    True
"""

from mechscope.vision.multimodal.arithmetic import (ConceptAtlas, Decomposition, concept_atlas, plot_concept_atlas,
                                                    sparse_concept_decomposition)
from mechscope.vision.multimodal.faceted import FacetedImages, FacetedOptions, faceted_render, world_facets
from mechscope.vision.multimodal.facets import facet_direction, faceted_objective
from mechscope.vision.multimodal.figures import plot_modality_table
from mechscope.vision.multimodal.stimuli import MODALITIES, ConceptStimuli, concept_stimuli, layer_responses
from mechscope.vision.multimodal.superordinate import SuperordinateUnits, superordinate_units
from mechscope.vision.multimodal.table import MultimodalUnits, modality_table, multimodal_units
from mechscope.vision.multimodal.text_search import search_text, tokenizer_words
from mechscope.vision.multimodal.text_side import (TextResponse, gradient_directions, linear_head_directions,
                                                   regression_directions, text_side_response, unit_directions)
from mechscope.vision.multimodal.typographic import FlipRate, random_letter_strings, typographic_flip_rate

__all__ = [
    "SuperordinateUnits", "superordinate_units", "MODALITIES", "ConceptStimuli", "concept_stimuli",
    "layer_responses", "ConceptAtlas", "FacetedImages", "FacetedOptions", "faceted_render", "world_facets",
    "Decomposition", "FlipRate", "MultimodalUnits", "TextResponse", "concept_atlas",
    "facet_direction", "faceted_objective", "gradient_directions", "linear_head_directions", "modality_table",
    "multimodal_units", "plot_concept_atlas", "plot_modality_table", "random_letter_strings", "regression_directions",
    "search_text", "sparse_concept_decomposition", "text_side_response", "tokenizer_words", "typographic_flip_rate", "unit_directions",
]
