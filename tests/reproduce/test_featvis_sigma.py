"""The feature-visualization σ claim measures each unit against the dataset, and the same units of the untrained
network as its control (256 images and 4 optimization steps here; the default is 2048 images, 256 steps)."""

import pytest

from mechscope.reproduce import featvis_sigma as F

pytestmark = pytest.mark.usefixtures("one_thread")


def test_featvis_sigma_against_the_untrained_network(tmp_path):
    result = F.check(tmp_path, images=256, steps=4)
    assert result.summary and result.controls and "|" not in result.summary
    n = result.numbers
    assert len(n["units"]) == F.UNITS and set(n["control_untrained_units"]) == set(n["units"])   # same units
    for row in (*n["units"].values(), *n["control_untrained_units"].values()):
        assert set(row) == {"featvis_max", "dataset_max", "sigma"}
    assert n["control_untrained_median_sigma"] is not None and n["control_untrained_dead_units"] < F.UNITS
    # the verdict at this size: 4 steps leave the trained units near their dataset mean (median 0.8 σ) while
    # the untrained units, whose dataset activations barely vary, already sit 4 σ out: it fails on both counts
    assert n["median_sigma"] < F.MIN_SIGMA and n["median_sigma"] < n["control_untrained_median_sigma"]
    assert result.passed is False
    assert (tmp_path / result.figures[0]).read_bytes()[:4] == b"\x89PNG"
