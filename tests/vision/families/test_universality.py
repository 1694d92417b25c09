import numpy as np
import pytest
import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.families.universality import (activation_correlation, activation_correlations, tuning_match,
                                                      universality)


def test_correlation_equals_numpy_on_the_pooled_samples():
    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1)), nn.Sequential(nn.Conv2d(3, 2, 3, padding=1))
    xs = [torch.rand(4, 3, 6, 6), torch.rand(3, 3, 6, 6)]
    corr = activation_correlation(a, b, "0", "0", xs, progress=False)
    with torch.no_grad():
        fa = torch.cat([a(x) for x in xs]).permute(1, 0, 2, 3).reshape(3, -1).numpy()
        fb = torch.cat([b(x) for x in xs]).permute(1, 0, 2, 3).reshape(2, -1).numpy()
    expected = np.corrcoef(np.concatenate([fa, fb]))[:3, 3:]
    np.testing.assert_allclose(corr.numpy(), expected, atol=1e-5)


def test_different_map_sizes_use_image_means_and_a_permuted_copy_matches_fully():
    a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    b = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2))
    with torch.no_grad():
        b[0].weight.copy_(a[0].weight[[1, 0, 3, 2]])
        b[0].bias.copy_(a[0].bias[[1, 0, 3, 2]])
    corr = activation_correlation(a, b, "0", "0", [(list(range(6)), torch.rand(6, 3, 8, 8))], progress=False)
    u = universality(corr, 0.999)
    assert u.best_match.tolist() == [1, 0, 3, 2] and u.share == 1.0
    corr = activation_correlation(a, b, "0", "1", [torch.rand(6, 3, 8, 8)], progress=False)  # 8x8 vs 4x4 maps
    assert corr.shape == (4, 4)


def test_errors():
    a = nn.Sequential(nn.Conv2d(3, 2, 1))
    with pytest.raises(MechscopeError, match="at least two"):
        activation_correlation(a, a, "0", "0", [torch.rand(1, 3, 1, 1)], progress=False)
    with pytest.raises(MechscopeError, match="batches must yield"):
        activation_correlation(a, a, "0", "0", ["x"], progress=False)
    with pytest.raises(KeyError):
        activation_correlation(a, a, "0", "nope", [torch.rand(2, 3, 2, 2)], progress=False)


def test_correlations_of_several_layers_in_one_pass_equal_one_at_a_time():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1))
    b = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1))
    xs = [torch.rand(4, 3, 6, 6), torch.rand(3, 3, 6, 6)]
    pairs = [("0", "0"), ("2", "2"), ("0", "2")]
    many = activation_correlations(a, b, pairs, xs, progress=False)
    for la, lb in pairs:
        torch.testing.assert_close(many[(la, lb)], activation_correlation(a, b, la, lb, xs, progress=False))
    with pytest.raises(MechscopeError, match="at least one"):
        activation_correlations(a, b, [], xs, progress=False)


def test_tuning_match_finds_the_rotated_family_and_its_orientation_difference():
    angles = torch.arange(0.0, 360.0, 10.0)

    def bump(pref, width=40.0):
        d = (angles - pref).remainder(360.0)
        d = torch.minimum(d, 360.0 - d)
        return torch.exp(-(d / width) ** 2)

    family_a = torch.stack([bump(p) for p in (0.0, 90.0, 180.0, 270.0)])
    family_b = torch.stack([bump(p + 10.0) for p in (270.0, 180.0, 90.0, 0.0)] + [torch.ones(36)])  # + a flat unit
    m = tuning_match(family_a, family_b, angles)
    assert m.best_match.tolist() == [3, 2, 1, 0] and m.orientation_diff.tolist() == [10.0] * 4
    assert float(m.best_corr.min()) > 0.9 and m.share(0.9, 10.0) == 1.0 and m.share(0.9, 5.0) == 0.0
    shuffled = tuning_match(family_a, torch.rand(6, 36, generator=torch.Generator().manual_seed(0)), angles)
    assert shuffled.share(0.8, 22.5) == 0.0                              # noise does not match a tuning curve
    empty = tuning_match(family_a[:0], family_b, angles)
    assert empty.best_match.numel() == 0 and empty.share() == 0.0
    with pytest.raises(MechscopeError, match="at least one"):
        tuning_match(family_a, family_b[:0], angles)
    with pytest.raises(MechscopeError, match="tuning curves must be"):
        tuning_match(family_a, family_b[:, :5], angles)
