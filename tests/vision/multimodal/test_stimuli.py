"""Concept stimuli cover every concept in every modality that can show it, deterministically, and a layer's
responses come back one row per image."""

import pytest
import torch

from mechscope.data.shapes import SHAPE_CLASSES
from mechscope.errors import MechscopeError
from mechscope.vision.multimodal.stimuli import concept_stimuli, layer_responses
from mechscope.zoo.organisms.shapes_clip_net import ShapesClipNet


def test_cells_and_labels():
    s = concept_stimuli(["ring", "blue", "pointed"], per_cell=3, seed=5)
    assert s.images.shape[0] == 3 * 3 + 2 * 3 + 3 * 3            # the colour has no sketch
    cells = {(int(c), int(m)) for c, m in zip(s.concept, s.modality)}
    assert cells == {(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)}
    ring = (s.concept == 0) & (s.modality < 2)
    assert (s.shape[ring] == SHAPE_CLASSES.index("ring")).all()
    blue_pictures = (s.concept == 1) & (s.modality == 0)
    assert (s.colour[blue_pictures] == s.colour[blue_pictures][0]).all()
    pointed = (s.concept == 2) & (s.modality < 2)
    assert {SHAPE_CLASSES[int(k)] for k in s.shape[pointed]} <= {"star", "angle", "polygon", "cross"}
    assert (s.shape[s.modality == 2] == -1).all()                  # words draw no shape
    again = concept_stimuli(["ring", "blue", "pointed"], per_cell=3, seed=5)
    assert torch.equal(again.images, s.images)


def test_bad_names_are_refused_with_the_valid_ones():
    with pytest.raises(MechscopeError, match="disc"):
        concept_stimuli(["dsic"])
    with pytest.raises(MechscopeError, match="picture"):
        concept_stimuli(["disc"], modalities=["photo"])


def test_layer_responses_reduce_positions():
    net = ShapesClipNet(seed=0)
    images = concept_stimuli(["disc"], per_cell=2).images
    mean = layer_responses(net, "mixed4b", images, batch_size=4)
    peak = layer_responses(net, "mixed4b", images, reduce="max")
    assert mean.shape == peak.shape == (6, 128) and bool((peak >= mean - 1e-6).all())
    assert layer_responses(net, "image_embed", images).shape == (6, 64)
