import numpy as np
import pytest
import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.families.universality import activation_correlation, universality


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
