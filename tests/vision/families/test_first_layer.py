import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.vision.families.branches import first_layer_svd
from mechscope.vision.families.first_layer import (branch_colour_split, kernel_colour_scores, svd_order)


def _grey(n=4, k=5):
    return torch.randn(n, 1, k, k).expand(-1, 3, -1, -1).clone()   # R = G = B at every pixel


def _opponent(n=4, k=5):
    w = torch.zeros(n, 3, k, k)
    w[:, 0], w[:, 1] = 1.0, -1.0     # red minus green: no luminance at all
    return w


def test_colour_score_grey_zero_opponent_one_and_mixed_between():
    torch.manual_seed(0)
    assert torch.allclose(kernel_colour_scores(_grey()), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(kernel_colour_scores(_opponent()), torch.ones(4, dtype=torch.float64))
    red = torch.zeros(1, 3, 3, 3)
    red[:, 0] = 1.0                  # pure red: 1/3 of its energy is luminance
    assert kernel_colour_scores(red).item() == pytest.approx(2 / 3)
    assert kernel_colour_scores(torch.zeros(1, 3, 3, 3)).item() == 0.0
    with pytest.raises(MechscopeError, match="RGB kernels"):
        kernel_colour_scores(torch.zeros(2, 1, 3, 3))


def test_split_of_sorted_units_beats_every_random_partition():
    torch.manual_seed(0)
    w = torch.cat([_grey(6), _opponent(6)])
    s = branch_colour_split(w, 2, draws=500, seed=1)
    assert s.branch_means == pytest.approx([0.0, 1.0]) and s.split == pytest.approx(1.0)
    # only the sorted partition itself (2 of C(12, 6) = 924) reaches the full split
    assert s.null_splits.shape == (500,) and float((s.null_splits >= 1.0 - 1e-9).double().mean()) < 0.01
    assert s.percentile >= 0.99
    three = branch_colour_split(torch.cat([_grey(4), _opponent(4), 0.5 * _grey(4) + _opponent(4)]), 3, draws=200)
    assert len(three.branch_means) == 3 and three.percentile > 0.95


def test_permutation_control_is_near_chance_for_shuffled_units():
    """Units in random order: the observed split is one more draw from the null, so its percentile is not
    extreme on average over shuffles."""
    torch.manual_seed(0)
    base = torch.cat([_grey(6), _opponent(6)])
    pct = [branch_colour_split(base[torch.randperm(12)], 2, draws=200, seed=s).percentile for s in range(20)]
    assert 0.2 < sum(pct) / len(pct) < 0.8
    assert sum(p >= 0.95 for p in pct) <= 3


def test_split_refuses_uneven_or_single_branch():
    with pytest.raises(MechscopeError, match="divide"):
        branch_colour_split(_opponent(5), 2)
    with pytest.raises(MechscopeError, match="divide"):
        branch_colour_split(_opponent(4), 1)


def test_svd_order_on_built_weights():
    """Weights whose biggest component is a colour-opponent blob and the next a grey checkerboard."""
    torch.manual_seed(0)
    k = 7
    blob = torch.zeros(3, k, k)
    blob[0], blob[1] = 1.0, -1.0
    checker = ((torch.arange(k)[:, None] + torch.arange(k)[None]) % 2 * 2 - 1).float().expand(3, k, k)
    smooth = torch.ones(3, k, k)
    coeff = torch.randn(32, 3) * torch.tensor([5.0, 3.0, 1.0])

    def build(a, b, c):
        return a[:, None, None, None] * blob + b[:, None, None, None] * checker + c[:, None, None, None] * smooth

    w = build(*coeff.T)
    order = svd_order(first_layer_svd(w), top=3)
    assert order.colour_first and order.frequency_second and order.holds
    swapped = svd_order(first_layer_svd(build(coeff[:, 1], coeff[:, 0], coeff[:, 2])), top=3)
    assert not swapped.colour_first and not swapped.holds   # the checkerboard now comes first
    with pytest.raises(MechscopeError, match="top must be"):
        svd_order(first_layer_svd(w), top=1)
