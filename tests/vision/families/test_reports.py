import json

import pytest

from mechscope.errors import MechscopeError
from mechscope.store import open_store, put_rows
from mechscope.vision.families.reports import (families_analysis, layer_detectors, stored_moments,
                                               unit_tuning)
from mechscope.zoo.registry import load


@pytest.fixture(scope="module")
def net():
    return load("shapes", weights="random", seed=0, device="cpu")


def test_unit_tuning_in_sigma_and_saved(net, tmp_path):
    t = unit_tuning(net, "conv2d0:3", size=64, n_orientations=8, moments=(0.0, 2.0))
    assert t.row["responses_sigma"] == [r / 2 for r in t.row["responses"]]
    assert t.row["peak_sigma"] == pytest.approx(max(t.row["responses"]) / 2)
    names = [p.name for p in t.save(tmp_path)]
    assert names == ["conv2d0_3_radial.png", "conv2d0_3_curvature.png", "conv2d0_3_tuning.json"]
    assert json.loads((tmp_path / "conv2d0_3_tuning.json").read_text()) == json.loads(json.dumps(t.row))


def test_layer_detectors_count_every_unit_and_save(net, tmp_path):
    found = layer_detectors(net, "conv2d0", size=64, n_orientations=8)
    assert sum(found.counts.values()) == len(found.rows) == 32
    assert set(found.by_orientation) == {"curve", "high_low", "line"}
    assert [p.name for p in found.save(tmp_path)] == ["conv2d0_detectors.json", "conv2d0_detectors.png"]


def test_families_refuse_an_unknown_criterion(net):
    with pytest.raises(MechscopeError, match="--by must be 'tuning' or 'weights'"):
        families_analysis(net, "conv2d0", by="colour")


def test_stored_moments_read_a_stats_store_and_name_what_it_holds(tmp_path):
    with open_store(tmp_path) as store:
        put_rows(store, "stats", [{"model": "shapes", "layer": "mixed3b", "channel": 4, "mean": 1.5, "std": 0.5}])
    assert stored_moments(tmp_path, "shapes", "mixed3b", 4) == (1.5, 0.5)
    with pytest.raises(MechscopeError, match="no statistics of shapes mixed3b:5"):
        stored_moments(tmp_path, "shapes", "mixed3b", 5)
