import pytest
import torch

from mechscope.data.layout import TASKS, LayoutConfig, LayoutDataset, generate
from mechscope.errors import MechscopeError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_items_are_functions_of_seed_and_index():
    a, la = LayoutDataset(n=40, seed=3).sample([7, 2, 30])
    b, lb = LayoutDataset(n=40, seed=3).sample([30, 7])
    assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0])
    assert all(torch.equal(la[k][[0, 2]], lb[k][[1, 0]]) for k in TASKS)
    other, _ = LayoutDataset(n=40, seed=4).sample([7])
    assert not torch.equal(a[0], other[0])
    assert a.shape == (3, 3, 32, 32) and 0 <= float(a.min()) and float(a.max()) <= 1


def test_rotation_turns_images_and_keeps_labels():
    plain, lp = LayoutDataset(n=16, seed=0).sample(range(16))
    turned, lt = LayoutDataset(n=16, seed=0, rotate=True).sample(range(16))
    assert torch.equal(turned, plain.rot90(1, (2, 3)))
    assert all(torch.equal(lp[k], lt[k]) for k in lp)
    # sky (blue, light) above in the plain world; on the left once turned counter-clockwise
    blue = plain[:, 2] - plain[:, 0]
    assert float(blue[:, :6].mean()) > float(blue[:, -6:].mean()) + 0.1
    blue_t = turned[:, 2] - turned[:, 0]
    assert float(blue_t[:, :, :6].mean()) > float(blue_t[:, :, -6:].mean()) + 0.1


def test_labels_depend_on_vertical_position():
    _, labels = generate(range(400), seed=1)
    above = labels["object_y"] < labels["horizon_y"]
    assert torch.equal(labels["place"] == 0, above)                     # place: above / below the horizon
    assert (labels["object_y"] - labels["horizon_y"]).abs().min() >= 2  # never on the line
    bins = labels["horizon"]
    means = [float(labels["horizon_y"][bins == b].mean()) for b in range(4)]
    assert means == sorted(means) and all((bins == b).any() for b in range(4))
    assert 0.35 < float(labels["place"].float().mean()) < 0.65
    assert set(labels["kind"].tolist()) == {0, 1, 2}


def test_bad_settings_are_refused():
    with pytest.raises(MechscopeError):
        generate([0], config=LayoutConfig(horizon=(0.6, 0.4)))
    with pytest.raises(MechscopeError):
        LayoutDataset(n=4).sample([4])
