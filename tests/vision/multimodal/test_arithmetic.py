"""Concept arithmetic: a planted sparse non-negative combination is recovered (greedy and L1), a random target is a
null that reconstructs far worse; the NMF atlas separates planted concept groups; bad input is refused."""

import pytest
import torch
import torch.nn.functional as F

from mechscope.errors import MechscopeError
from mechscope.vision.multimodal import concept_atlas, plot_concept_atlas, sparse_concept_decomposition

U, D = 30, 64


@pytest.fixture(scope="module")
def directions():
    return F.normalize(torch.randn(U, D, generator=torch.Generator().manual_seed(0)), dim=1)


def test_greedy_recovers_a_planted_sparse_combination(directions):
    target = 2.0 * directions[3] + 1.0 * directions[11] + 0.5 * directions[20]
    d = sparse_concept_decomposition(target, directions, k=3)
    assert d.support == [3, 11, 20]                                  # by decreasing weight
    w = d.weights[d.support] / d.weights[3]
    assert torch.allclose(w, torch.tensor([1.0, 0.5, 0.25]), atol=1e-4)
    assert (d.weights >= 0).all() and int((d.weights > 0).sum()) == 3
    assert d.cosine > 0.9999
    assert d.reconstruction.shape == (D,)


def test_l1_recovers_the_support(directions):
    target = 2.0 * directions[3] + 1.0 * directions[11] + 0.5 * directions[20]
    d = sparse_concept_decomposition(target, directions, k=None, l1=1e-4)
    assert set(d.support[:3]) == {3, 11, 20}
    assert (d.weights >= 0).all() and d.cosine > 0.99


def test_random_target_is_a_null(directions):
    g = torch.Generator().manual_seed(7)
    null = [sparse_concept_decomposition(torch.randn(D, generator=g), directions, k=3).cosine for _ in range(10)]
    assert max(null) < 0.75


def test_weights_stay_non_negative_when_the_target_points_away(directions):
    d = sparse_concept_decomposition(-directions[3], directions, k=5)
    assert (d.weights >= 0).all() and d.weights[3] == 0


def test_atlas_separates_planted_concept_groups(tmp_path):
    g = torch.Generator().manual_seed(0)
    m = torch.rand(8, 20, generator=g) * 0.05
    def block():                                                      # a rank-1 non-negative block
        return torch.outer(torch.rand(4, generator=g) + 0.5, torch.rand(10, generator=g) + 0.5)

    m[:4, :10] += block()                                             # concepts 0-3 built from units 0-9
    m[4:, 10:] += block()                                             # concepts 4-7 from units 10-19
    atlas = concept_atlas(m, k=2)
    assert atlas.concept_factors.shape == (8, 2) and atlas.unit_factors.shape == (2, 20)
    group = atlas.concept_factors.argmax(1)
    assert len(set(group[:4].tolist())) == 1 and len(set(group[4:].tolist())) == 1 and group[0] != group[4]
    dist = torch.cdist(atlas.layout, atlas.layout)
    assert dist[:4, :4].max() < dist[:4, 4:].min()
    assert atlas.error < 0.1
    fig = plot_concept_atlas(atlas, [f"c{i}" for i in range(8)], path=tmp_path / "atlas.png",
                             factor_names=["A", "B"])
    assert fig is not None and (tmp_path / "atlas.png").read_bytes()[:4] == b"\x89PNG"


def test_atlas_negatives_refused_unless_clipped():
    m = torch.tensor([[1.0, -1.0], [0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(MechscopeError, match="clip_negative=True"):
        concept_atlas(m, k=1)
    assert concept_atlas(m, k=1, clip_negative=True).layout.shape == (3, 2)


@pytest.mark.parametrize("call, message", [
    (lambda: sparse_concept_decomposition(torch.ones(2, 3), torch.ones(4, 3)), r"one embedding \[D\]"),
    (lambda: sparse_concept_decomposition(torch.ones(3), torch.ones(4, 2)), r"\[U, 3\]"),
    (lambda: sparse_concept_decomposition(torch.ones(3), torch.ones(4, 3), k=2, l1=0.1), "exactly one"),
    (lambda: sparse_concept_decomposition(torch.ones(3), torch.ones(4, 3), k=0), "positive"),
    (lambda: sparse_concept_decomposition(torch.ones(3), torch.ones(4, 3), k=None, l1=0.0), "> 0"),
    (lambda: sparse_concept_decomposition(torch.zeros(3), torch.ones(4, 3)), "all zeros"),
    (lambda: concept_atlas(torch.ones(3)), r"\[concepts, units\]"),
    (lambda: concept_atlas(torch.ones(3, 4), k=4), r"1\.\.3"),
    (lambda: concept_atlas(torch.tensor([[float("nan"), 1.0], [1.0, 1.0]]), k=1), "NaN"),
    (lambda: concept_atlas(torch.zeros(3, 4), k=1), "all zeros"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(MechscopeError, match=message):
        call()


def test_atlas_plot_needs_one_label_per_concept():
    atlas = concept_atlas(torch.rand(3, 4, generator=torch.Generator().manual_seed(0)), k=2)
    with pytest.raises(MechscopeError, match="one label per concept"):
        plot_concept_atlas(atlas, ["a"])
