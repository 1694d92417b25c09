"""A unit's feature visualization does not depend on the batch it is rendered in (per-unit seed streams)."""

import torch
from torch import nn

from mechscope.images import png_bytes
from mechscope.vision.featvis.render import derived_seed, render_units


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1)).eval()


def _images(result) -> dict[str, torch.Tensor]:
    return dict(zip(result.labels, result.final))


def test_a_unit_renders_the_same_alone_in_slices_or_in_one_batch():
    net = _net()
    units = [f"2:{c}" for c in range(6)]
    options = dict(size=24, steps=12, seed=3, negative=True, progress=False)
    whole = _images(render_units(net, units, **options))
    for size in (1, 3):
        sliced = {}
        for lo in range(0, len(units), size):
            sliced.update(_images(render_units(net, units[lo:lo + size], **options)))
        assert sliced.keys() == whole.keys()
        for label, image in whole.items():
            assert torch.equal(sliced[label], image), (size, label)      # bitwise on this CPU
            assert png_bytes(sliced[label]) == png_bytes(image)
    # order within the batch does not matter either, and the seed does
    backwards = _images(render_units(net, units[::-1], **options))
    assert all(torch.equal(backwards[label], image) for label, image in whole.items())
    other = _images(render_units(net, units, **{**options, "seed": 4}))
    assert not torch.equal(other["2:0"], whole["2:0"])
    # distinct units start from distinct parameters (not one shared draw)
    assert not torch.equal(whole["2:0"], whole["2:1"])


def test_diversity_sets_are_per_unit_too():
    net = _net()
    options = dict(size=16, steps=4, seed=0, diversity=2, progress=False)
    both = _images(render_units(net, ["2:1", "2:4"], **options))
    alone = _images(render_units(net, ["2:4"], **options))
    assert alone.keys() <= both.keys()
    assert all(torch.equal(both[label], image) for label, image in alone.items())


def test_derived_seeds_are_stable_and_distinct():
    assert derived_seed(0, "a:1") == derived_seed(0, "a:1")
    assert len({derived_seed(s, f"a:{c}") for s in range(3) for c in range(50)}) == 150
    assert 0 <= derived_seed(2**40, "x") < 2**63
