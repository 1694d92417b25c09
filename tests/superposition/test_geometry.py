import dataclasses
import math

import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.superposition.geometry import (GeometryOptions, density_grid, find_plateaus, geometry_sweep,
                                              longest_plateau, plot_sweep, smooth_control)

X = [1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 300.0, 1000.0]
STAIRCASE = [1.0, 0.99, 1.01, 0.98, 0.75, 0.51, 0.50, 0.49, 0.50, 0.40, 0.38, 0.30]


def test_staircase_finds_both_plateaus_with_their_extent():
    one = longest_plateau(X, STAIRCASE, 1.0, tol=0.03)
    half = longest_plateau(X, STAIRCASE, 0.5, tol=0.03)
    assert (one.start, one.end, one.count, one.x_from, one.x_to) == (0, 3, 4, 1.0, 2.0)
    assert one.decades == pytest.approx(math.log10(2.0))
    assert (half.start, half.end, half.count, half.x_from, half.x_to) == (5, 8, 4, 5.0, 50.0)
    assert half.decades == pytest.approx(1.0)


def test_smooth_curve_has_no_plateau_of_three_points():
    smooth = [1.0 - 0.7 * math.log10(x) / 3 for x in X]      # straight in log x, 1 -> 0.3
    for level in (1.0, 0.5):
        assert all(p.count < 3 for p in find_plateaus(X, smooth, level, tol=0.03))
    assert longest_plateau(X, [0.8] * len(X), 0.5) is None


def test_runs_are_split_by_a_point_outside_and_sorted_by_decades():
    runs = find_plateaus([1, 2, 3, 4, 5, 6], [0.5, 0.5, 0.7, 0.5, 0.5, 0.5], 0.5, tol=0.03)
    assert [(r.start, r.end) for r in runs] == [(0, 1), (3, 5)]          # 2 -> 1 spans more decades than 4 -> 6


def test_control_is_log_linear_between_the_curves_ends():
    c = smooth_control(X, STAIRCASE)
    assert float(c[0]) == STAIRCASE[0] and float(c[-1]) == pytest.approx(STAIRCASE[-1])
    assert bool((c[1:] <= c[:-1]).all())
    assert float(c[6]) == pytest.approx(1.0 - 0.7 * math.log10(10.0) / 3)


def test_bad_input_is_a_mechscope_error():
    with pytest.raises(MechscopeError):
        find_plateaus([1, 1], [1, 1], 1.0)
    with pytest.raises(MechscopeError):
        density_grid(1, 3)
    with pytest.raises(MechscopeError):
        geometry_sweep(GeometryOptions(densities=(0.0,), steps=1))


def test_grid_is_denser_at_the_dense_end():
    inv = [1 / d for d in density_grid(10, 18)]
    assert inv[0] == pytest.approx(1.0) and inv[-1] == pytest.approx(1000.0) and len(inv) == 28
    assert sum(x <= 2.0 for x in inv) == 10 and inv[1] < 1.1


def test_sweep_lays_out_seeds_by_densities_and_measures_dpf():
    o = GeometryOptions(n_features=12, n_hidden=3, densities=(1.0, 0.3, 0.05), seeds=2, steps=40, batch_size=64)
    r = geometry_sweep(o)
    assert r.dpf.shape == (2, 3) and r.W.shape == (2, 3, 12, 3) and r.losses.shape == (2, 3)
    assert torch.allclose(r.dpf, 3 / r.W.square().sum((-2, -1)))
    assert torch.allclose(r.mean, r.dpf.mean(0)) and torch.allclose(r.std, r.dpf.std(0))
    assert r.one_over_density.tolist() == pytest.approx([1.0, 1 / 0.3, 20.0])
    assert not torch.equal(r.W[0], r.W[1])                     # the seeds are different instances
    fig = plot_sweep(r, [], smooth_control(r.one_over_density, r.mean))
    assert len(fig.axes) == 1


def test_groups_of_instances_keep_the_layout():
    o = GeometryOptions(n_features=12, n_hidden=3, densities=(1.0, 0.3, 0.05), seeds=2, steps=10, batch_size=32,
                        group_size=4)
    r = geometry_sweep(o)
    assert r.dpf.shape == (2, 3) and r.losses.shape == (2, 3) and r.W.shape == (2, 3, 12, 3)
    assert torch.allclose(r.dpf, 3 / r.W.square().sum((-2, -1)))


def test_workers_sparse_route_and_group_layout_do_not_change_the_result():
    """Threads only schedule the groups: the same models come out; the sparse route is taken below SPARSE_BELOW
    (its own random stream, so turning it off changes the sparse densities' models and nothing else)."""
    from mechscope.superposition.geometry import SPARSE_BELOW

    dens = (1.0, 0.2, SPARSE_BELOW / 2)
    o = GeometryOptions(n_features=40, n_hidden=4, densities=dens, seeds=2, steps=30, batch_size=64, workers=1)
    one = geometry_sweep(o)
    two = geometry_sweep(dataclasses.replace(o, workers=2))
    assert torch.equal(one.W, two.W) and torch.equal(one.losses, two.losses)
    dense = geometry_sweep(dataclasses.replace(o, sparse=False))
    assert torch.equal(one.W[:, :2], dense.W[:, :2]) and not torch.equal(one.W[:, 2], dense.W[:, 2])
    with pytest.raises(MechscopeError, match="workers"):
        geometry_sweep(dataclasses.replace(o, workers=0))
