"""Faceted feature visualization on a random-weight ShapesClipNet: facets fitted on the world's images separate
held-out renderings, and each facet's drawing leans toward its facet."""

import pytest
import torch

from mechscope.capture import capture
from mechscope.errors import MechscopeError
from mechscope.vision.multimodal import FacetedOptions, faceted_render, world_facets
from mechscope.vision.multimodal.stimuli import concept_stimuli, layer_responses
from mechscope.zoo.organisms.shapes_clip_net import ShapesClipNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return ShapesClipNet(seed=0).eval()


@pytest.fixture(scope="module")
def facets(net):
    return world_facets(net, "mixed4a", concepts=["disc", "star", "ring", "line"], per_cell=3)


def test_facets_are_opposite_unit_vectors_that_separate_fresh_renderings(net, facets):
    word, picture = facets["word"], facets["picture"]
    assert word.shape == (112,) and float(word.norm()) == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(word, -picture)
    fresh = concept_stimuli(["disc", "star", "ring", "line"], ("picture", "word"), per_cell=4, seed=77)
    proj = layer_responses(net, "mixed4a", fresh.images) @ word
    assert float(proj[fresh.modality == 1].mean()) > float(proj[fresh.modality == 0].mean())


def test_each_facet_draws_toward_itself(net, facets):
    options = FacetedOptions(weight=5.0, steps=8, size=32, seed=1)
    out = faceted_render(net, "mixed4b:3", facets, "mixed4a", options=options)
    assert set(out.images) == {"picture", "word"} and set(out.values) == {"picture", "word"}
    assert all(tuple(im.shape) == (1, 3, 32, 32) for im in out.images.values())
    assert not torch.equal(out.images["picture"], out.images["word"])
    with torch.no_grad():
        proj = {k: float(capture(net, im, "mixed4a")["mixed4a"].flatten(2).mean(2)[0] @ facets["word"])
                for k, im in out.images.items()}
    assert proj["word"] > proj["picture"]


def test_bad_input_names_what_is_valid(net, facets):
    with pytest.raises(MechscopeError, match="modality"):
        world_facets(net, "mixed4a", modalities=("picture", "speech"))
    with pytest.raises(MechscopeError, match="at least two"):
        world_facets(net, "mixed4a", modalities=("word", "word"))
    with pytest.raises(MechscopeError, match="facets is empty"):
        faceted_render(net, "mixed4b:3", {}, "mixed4a")
    with pytest.raises(MechscopeError, match="steps"):
        FacetedOptions(steps=0)
