"""Modality table and multimodal test: planted multimodal units are found with their concept; a shuffled-label null
finds (near) none; bad input is refused naming what is valid."""

from types import SimpleNamespace

import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.vision.multimodal import modality_table, multimodal_units

C, M, U, PER_CELL = 6, 3, 40, 40          # concepts, modalities (picture, sketch, word), units, items per cell
PICTURE, SKETCH, WORD = 0, 1, 2


def _world(seed=0):
    """Items of every (modality, concept) cell, with noise units; units 0-4 answer concept u % C as picture and as
    word (multimodal), units 5-9 answer concept u % C as picture but concept (u + 1) % C as word (not)."""
    g = torch.Generator().manual_seed(seed)
    modality = torch.arange(M).repeat_interleave(C * PER_CELL)
    concept = torch.arange(C).repeat_interleave(PER_CELL).repeat(M)
    acts = torch.randn(len(concept), U, generator=g)
    for u in range(5):
        acts[:, u] += 3.0 * ((concept == u % C) & (modality != SKETCH))
    for u in range(5, 10):
        acts[:, u] += 3.0 * ((concept == u % C) & (modality == PICTURE))
        acts[:, u] += 3.0 * ((concept == (u + 1) % C) & (modality == WORD))
    return acts, concept, modality


def test_planted_multimodal_units_are_found_with_their_concept():
    acts, concept, modality = _world()
    table = modality_table(acts, concept, modality, C, M)
    assert table.shape == (M, C, U)
    found = multimodal_units(table, ("picture", "word"), margin=1.0, modality_names=["picture", "sketch", "word"])
    assert found.modalities == (PICTURE, WORD)
    assert found.units() == [0, 1, 2, 3, 4]
    assert found.count == 5
    assert found.concept[:, :5].tolist() == [[0, 1, 2, 3, 4]] * 2
    assert (found.margin[:, :5] > 1.0).all()
    # units 5-9: strongest concept differs between picture and word
    assert not found.agree[5:10].any()
    assert found.concept[0, 5:10].tolist() == [5, 0, 1, 2, 3]
    assert found.concept[1, 5:10].tolist() == [0, 1, 2, 3, 4]
    # the planted cells sit well above the dataset mean, in sigma
    assert (table[PICTURE, [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]] > 1.5).all()
    # picture and sketch do not share units 0-4's concept
    assert multimodal_units(table, (PICTURE, SKETCH), margin=1.0).multimodal[:5].sum() == 0


def test_shuffled_concept_labels_are_a_null_with_near_none():
    acts, concept, modality = _world()
    shuffled = concept[torch.randperm(len(concept), generator=torch.Generator().manual_seed(1))]
    null = multimodal_units(modality_table(acts, shuffled, modality, C, M), (PICTURE, WORD), margin=1.0)
    assert null.count <= 1
    noise_only = multimodal_units(modality_table(acts[:, 10:], concept, modality, C, M), (PICTURE, WORD), margin=1.0)
    assert noise_only.count == 0


def test_table_values_by_hand_and_statistics_sources():
    acts = torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0], [7.0, 5.0]])
    concept, modality = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 0, 0])
    table = modality_table(acts, concept, modality, n_concepts=3, n_modalities=2)
    sigma = acts[:, 0].std(unbiased=False)
    assert table[0, 0, 0] == pytest.approx(float((2.0 - 4.0) / sigma))
    assert table[0, 1, 0] == pytest.approx(float((6.0 - 4.0) / sigma))
    assert table[0, :2, 1].tolist() == [0.0, 0.0]                     # a constant (dead) unit: 0, not NaN
    assert torch.isnan(table[0, 2]).all() and torch.isnan(table[1]).all()    # empty cells
    given = modality_table(acts, concept, modality, 3, 2, stats=(torch.tensor([0.0, 0.0]), torch.tensor([2.0, 1.0])))
    assert given[0, 0].tolist() == [1.0, 5.0]
    like_unit_stats = SimpleNamespace(mean=[0.0, 0.0], std=[2.0, 1.0])   # UnitStats has .mean and .std
    assert torch.allclose(modality_table(acts, concept, modality, 3, 2, stats=like_unit_stats), given, equal_nan=True)
    as_tensor = torch.tensor([[0.0, 0.0], [2.0, 1.0]])                   # [2, U]: row 0 mean, row 1 std
    assert torch.allclose(modality_table(acts, concept, modality, 3, 2, stats=as_tensor), given, equal_nan=True)
    assert torch.allclose(modality_table(acts, concept, modality, 3, 2, stats=as_tensor.numpy()), given,
                          equal_nan=True)
    maps = acts[:, :, None, None].expand(4, 2, 3, 3)                 # [N, U, H, W]: averaged over positions
    assert torch.allclose(modality_table(maps, concept, modality, 3, 2), table, equal_nan=True)


def test_empty_cells_never_win_and_rows_are_json_ready():
    table = torch.tensor([[[2.0], [0.0], [float("nan")]], [[3.0], [float("nan")], [1.0]]])   # [2, 3, 1]
    m = multimodal_units(table, (0, 1), margin=1.5)
    assert m.concept[:, 0].tolist() == [0, 0]
    assert m.margin[:, 0].tolist() == [2.0, 2.0]
    assert m.multimodal.tolist() == [True]
    row = m.rows(["star", "ring", "wave"])[0]
    assert row == {"unit": 0, "concept": ["star", "star"], "sigma": [2.0, 3.0], "margin": [2.0, 2.0],
                   "agree": True, "multimodal": True}
    assert multimodal_units(table, (0, 1), margin=2.5).count == 0


@pytest.mark.parametrize("call, message", [
    (lambda: modality_table(torch.zeros(4), torch.zeros(4), torch.zeros(4), 2, 2), r"\[N, U\]"),
    (lambda: modality_table(torch.zeros(4, 2), torch.zeros(3), torch.zeros(4), 2, 2), "4 labels"),
    (lambda: modality_table(torch.zeros(4, 2), torch.tensor([0, 1, 2, 0]), torch.zeros(4), 2, 2), r"0\.\.1"),
    (lambda: modality_table(torch.zeros(4, 2), torch.zeros(4), torch.full((4,), 0.5), 2, 2), "integers"),
    (lambda: modality_table(torch.zeros(2, 2), torch.zeros(2), torch.zeros(2), 2, 2,
                            stats=(torch.zeros(3), torch.ones(3))), r"\[2\]"),
    (lambda: modality_table(torch.zeros(2, 2), torch.zeros(2), torch.zeros(2), 2, 2, stats=torch.zeros(3, 2)),
     r"\[2, 2\] \(row 0 mean"),
    (lambda: modality_table(torch.zeros(2, 2), torch.zeros(2), torch.zeros(2), 2, 2, stats=3.0), "UnitStats"),
    (lambda: multimodal_units(torch.zeros(2, 3)), r"\[modalities, concepts, units\]"),
    (lambda: multimodal_units(torch.zeros(2, 1, 3)), "at least 2 concepts"),
    (lambda: multimodal_units(torch.zeros(2, 3, 3), (0, 2)), r"outside 0\.\.1"),
    (lambda: multimodal_units(torch.zeros(2, 3, 3), (0, 0)), "must differ"),
    (lambda: multimodal_units(torch.zeros(2, 3, 3), ("photo", "word"), modality_names=["picture", "word"]),
     r"unknown modality 'photo'; valid: \['picture', 'word'\]"),
])
def test_bad_input_is_refused_naming_what_is_valid(call, message):
    with pytest.raises(MechscopeError, match=message):
        call()
