import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.vision.evidence.quilt import EMPTY, quilt, quilt_levels


def _tiles(n):
    return torch.arange(n, dtype=torch.float32).div(100)[:, None, None, None].expand(n, 3, 2, 2).clone()


def test_rows_hold_levels_highest_first_and_empty_slots_are_grey():
    values = torch.tensor([0.0, 9.0, 1.0, 5.0, 8.0])  # levels over 0..9 in 3 bins: 0, 2, 0, 1, 2
    out = quilt(_tiles(5), values, bins=3, per_bin=3, pad=1)
    assert out.shape == (3, 3 * 3 - 1, 3 * 3 - 1)
    cell = lambda r, c: float(out[0, r * 3, c * 3])  # noqa: E731
    assert [cell(0, c) for c in range(3)] == pytest.approx([0.01, 0.04, EMPTY])  # items 1, 4 (dataset order)
    assert [cell(1, c) for c in range(3)] == pytest.approx([0.03, EMPTY, EMPTY])
    assert [cell(2, c) for c in range(3)] == pytest.approx([0.0, 0.02, EMPTY])
    assert float(out[0, 2, 0]) == 1.0  # the gap between rows is white


def test_full_levels_are_a_seeded_random_choice():
    values = torch.zeros(20)
    a = quilt(_tiles(20), values, bins=1, per_bin=4, pad=0, seed=1)
    b = quilt(_tiles(20), values, bins=1, per_bin=4, pad=0, seed=1)
    c = quilt(_tiles(20), values, bins=1, per_bin=4, pad=0, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    picked = a[0, 0, ::2]
    assert torch.equal(picked, picked.sort().values)  # in dataset order


def test_levels_range_and_nan():
    edges, level = quilt_levels([-5.0, 0.5, 20.0, float("nan")], bins=2, value_range=(0, 1))
    assert edges.tolist() == [0.0, 0.5, 1.0] and level.tolist() == [0, 1, 1, -1]
    with pytest.raises(MechscopeError, match="values"):
        quilt(_tiles(3), [1.0, 2.0], bins=2)
