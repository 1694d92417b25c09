import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.vision.circuits.feature_use import (ablation_plot, shapes_held_out, task_ablation,
                                                   unit_ablation_table)
from mechscope.zoo.registry import load


@pytest.fixture(scope="module")
def world():
    return load("shapes", device="cpu"), *shapes_held_out("shapes", 60)


def test_task_ablation_compares_the_chosen_set_with_random_sets(world, tmp_path):
    net, x, labels = world
    r = task_ablation(net, "mixed3b", [5, 9, 9, 12], x, labels, draws=5, seed=1)
    assert r.units == [5, 9, 12] and len(r.random_drops) == 5 and r.images == 60
    assert set(r.drop) == set(r.baseline) == {"shape", "curve", "boundary", "colour"}
    for t in r.drop:                                       # share and p-value follow from the drops
        below = sum(d[t] < r.drop[t] for d in r.random_drops)
        assert r.share_below[t] == below / 5
        assert r.p_value[t] == (1 + sum(d[t] >= r.drop[t] for d in r.random_drops)) / 6
    half = list(range(0, 208, 2))
    zero = task_ablation(net, "mixed3b", half, x, labels, draws=1)
    mean = task_ablation(net, "mixed3b", half, x, labels, mode="mean", draws=1, mean_images=32)
    assert mean.mode == "mean" and mean.drop != zero.drop and zero.drop["shape"] > 0
    assert ablation_plot([r, mean], tmp_path / "a.png").stat().st_size > 0


def test_unit_ablation_table_rows_are_single_unit_ablations(world):
    net, x, labels = world
    table = unit_ablation_table(net, "mixed4b", x, labels)
    assert table.shape == (256, 4) and table.abs().max() <= 1
    unit = int(table.abs().sum(1).argmax())
    alone = task_ablation(net, "mixed4b", [unit], x, labels, draws=0)
    assert table[unit].tolist() == pytest.approx([alone.drop[t] for t in ("shape", "curve", "boundary", "colour")])
    everything = task_ablation(net, "mixed4b", list(range(256)), x, labels, draws=0)
    assert everything.drop["shape"] > 0.3                    # the whole layer off breaks the network


def test_feature_use_refuses_models_outside_the_shapes_world(world):
    _, x, labels = world
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    other.layer_table = {}
    with pytest.raises(MechscopeError, match="shapes world's 61 task logits"):
        task_ablation(other, "0", [0], x, labels)
    with pytest.raises(MechscopeError, match="at least one unit"):
        task_ablation(world[0], "mixed3b", [], x, labels)
