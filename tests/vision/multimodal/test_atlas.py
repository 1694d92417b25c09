import pytest
import torch

import mechscope
from mechscope.data.concepts import CONCEPT_NAMES
from mechscope.errors import MechscopeError
from mechscope.vision.multimodal.atlas import (ATLAS_MODALITIES, caption_concepts, composite_decomposition,
                                               concept_atlas_report)
from mechscope.vision.multimodal.organism import unit_modality_report


@pytest.fixture(scope="module")
def clip():
    torch.set_num_threads(1)
    return mechscope.load("shapes-clip", device="cpu").eval()


@pytest.fixture(scope="module")
def report(clip):
    return unit_modality_report(clip, "image_embed", CONCEPT_NAMES, ATLAS_MODALITIES, per_cell=4)


def test_caption_concepts_reads_the_worlds_words():
    assert caption_concepts("a photo of a red star") == ["red", "star"]
    assert caption_concepts("qwzx") == []


def test_atlas_shapes_rows_and_figure(clip, report, tmp_path):
    a = concept_atlas_report(clip, "image_embed", k=3, report=report)
    assert a.matrix.shape == (20, 64) and (a.matrix >= 0).all()
    assert a.atlas.concept_factors.shape == (20, 3) and a.atlas.unit_factors.shape == (3, 64)
    assert a.atlas.layout.shape == (20, 2) and 0 < a.atlas.error < 1
    rows = a.rows()
    assert len(rows) == 3 and all(c in CONCEPT_NAMES for r in rows for c, _ in r["top_concepts"])
    d = a.as_dict()
    assert d["k"] == 3 and set(d["layout"]) == set(CONCEPT_NAMES)
    a.plot(tmp_path / "atlas.png")
    assert (tmp_path / "atlas.png").stat().st_size > 0
    with pytest.raises(MechscopeError, match="k must be in"):
        concept_atlas_report(clip, "image_embed", k=30, report=report)


def test_composites_name_their_words_above_random_units_and_controls_are_computed(clip, report):
    c = composite_decomposition(clip, layer="image_embed", k=3, report=report)
    assert len(c.rows) == 8 and all(len(r["units"]) <= 3 for r in c.rows)
    assert set(c.controls) == {"random_letters", "random_vector", "random_directions"}
    assert all(len(v) == 8 and all(0 <= x <= 1 for x in v) for v in c.controls.values())
    assert 0 < c.mean_cosine() <= 1
    # the finding: the chosen units' strongest concepts name the caption's words far above random unit sets
    # (measured at per_cell 10: 0.69 vs 0.24); the cosine itself does NOT beat the controls (module docstring)
    assert c.match_rate() > c.random_units_match_rate + 0.2
    assert c.as_dict()["captions"][0]["text"] == "a red star"


def test_composite_cosine_beats_random_directions_on_the_heads_columns(clip):
    report = unit_modality_report(clip, "mixed4b", CONCEPT_NAMES, ATLAS_MODALITIES, per_cell=2)
    c = composite_decomposition(clip, texts=("a red star", "a blue ring"), layer="mixed4b", k=3, report=report)
    m = c.mean_control()
    assert c.mean_cosine() > m["random_directions"] + 0.1 and c.mean_cosine() > m["random_vector"] + 0.1


def test_composite_refuses_no_texts(clip, report):
    with pytest.raises(MechscopeError, match="at least one text"):
        composite_decomposition(clip, texts=(), report=report)
