import pytest
import torch
from torch import nn

import mechscope
from mechscope.errors import MechscopeError
from mechscope.vision.multimodal.organism import (candidate_texts, fit_images, names_concept,
                                                  picture_selective_units, require_image_text,
                                                  superordinate_report, text_side_report, typographic_attack,
                                                  unit_modality_report, unit_text_directions, zeroshot)
from mechscope.vision.multimodal.superordinate import superordinate_units

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def clip():
    return mechscope.load("shapes-clip", device="cpu")


@pytest.fixture(scope="module")
def embed_report(clip):
    return unit_modality_report(clip, "image_embed", per_cell=3)


def test_superordinate_needs_every_member_above_every_non_member():
    concepts = ["disc", "ring", "star", "cross", "line"]
    groups = {"round": ("disc", "ring"), "pointed": ("star", "cross"), "linear": ("line",)}
    table = torch.tensor([[2.0, 1.0, 0.0], [1.5, 1.0, 0.0], [0.5, 1.2, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    s = superordinate_units(table, concepts, groups, margin=0.5)
    # unit 0: round, weakest member 1.5 beats strongest other 0.5 by 1.0; unit 1: star beats ring but cross does
    # not: no group passes; unit 2: the one-member group linear
    assert s.superordinate.tolist() == [True, False, True]
    assert s.group_names()[0] == "round" and s.per_group() == {"round": 1, "pointed": 0, "linear": 1}
    assert abs(float(s.best_gap[0]) - 1.0) < 1e-6 and s.rows()[1]["superordinate"] is False
    with pytest.raises(MechscopeError, match="no row"):
        superordinate_units(table[:4], concepts[:4], groups)
    with pytest.raises(MechscopeError, match="NaN"):
        superordinate_units(torch.full((5, 3), float("nan")), concepts, groups)


def test_require_image_text_names_the_image_text_models():
    with pytest.raises(MechscopeError, match="shapes-clip.*clip-rn50x4"):
        require_image_text(nn.Linear(2, 2), "shapes")
    with pytest.raises(MechscopeError, match="no text tower"):
        zeroshot(nn.Linear(2, 2))


def test_modality_report_rows_and_counts(embed_report):
    r = embed_report
    assert r.table.shape == (3, 10, 64) and set(r.tests) == {"picture-word", "picture-sketch"}
    rows = r.rows()
    assert len(rows) == 64 and set(rows[0]["strongest"]) == {"picture", "sketch", "word"}
    d = r.as_dict()
    assert d["counts"]["picture-word"] == len(d["multimodal_units"]["picture-word"]) == r.count()
    assert all(rows[u]["multimodal"]["picture-word"] for u in d["multimodal_units"]["picture-word"])
    with pytest.raises(MechscopeError, match="picture"):
        unit_modality_report(nn.Identity(), "x", modalities=("word",))


def test_text_side_of_joint_space_units(clip, embed_report):
    texts = candidate_texts()
    assert "the word star" in texts and "a picture of a star" in texts and len(texts) == len(set(texts))
    assert names_concept("a drawing of a star", "star") and not names_concept("a starfish", "star")
    dirs = unit_text_directions(clip, "image_embed")
    assert torch.equal(dirs, torch.eye(64))
    assert torch.allclose(unit_text_directions(clip, "mixed4b"), clip.image_embed.weight.T)
    units, concepts = picture_selective_units(embed_report, 4)
    from mechscope.vision.multimodal.organism import encode_texts
    rows = text_side_report(dirs[units], encode_texts(clip, texts), texts, concepts, k=2)
    assert len(rows) == 4 and len(rows[0]["top"]) == 2 and isinstance(rows[0]["names_concept"], bool)
    with pytest.raises(MechscopeError, match="pass images="):
        unit_text_directions(clip, "mixed3b")
    from mechscope.vision.multimodal.stimuli import concept_stimuli
    reg = unit_text_directions(clip, "mixed3b", images=concept_stimuli(per_cell=6).images)
    assert reg.shape[1] == 64 and torch.isfinite(reg).all()


def test_zeroshot_and_typographic_on_the_organism(clip):
    acc = zeroshot(clip, ("picture", "word"), n=20)
    assert set(acc) == {"picture", "word"} and acc["picture"] >= 0.8 and acc["word"] >= 0.8
    with pytest.raises(MechscopeError, match="picture\\+word"):
        zeroshot(clip, ("photo",), n=2)
    r = typographic_attack(clip, n=40)
    d = r.as_dict()
    assert d["own_word"]["flip_rate"] is None and d["attack"]["n"] == 40
    assert r.attack.clean_accuracy == r.random_letters.clean_accuracy == r.own_word.clean_accuracy
    assert r.attack.flip_rate > r.random_letters.flip_rate


def test_superordinate_report_reads_the_picture_row(clip):
    s = superordinate_report(unit_modality_report(clip, "mixed4b", per_cell=3))
    assert s.gap.shape == (3, 128) and s.count == sum(s.per_group().values())


def test_fit_images_resizes_to_a_models_input():
    class Spec:
        image_size = 96

    class M(nn.Module):
        spec = Spec()

    assert fit_images(M(), torch.rand(2, 3, 64, 64)).shape == (2, 3, 96, 96)
    assert fit_images(nn.Identity(), torch.rand(2, 3, 64, 64)).shape == (2, 3, 64, 64)
