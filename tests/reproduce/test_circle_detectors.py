import pytest

from mechscope.reproduce import circle_detectors

pytestmark = pytest.mark.usefixtures("one_thread")


def test_circle_claim_verdict_with_its_shuffled_untrained_and_stimulus_controls(tmp_path):
    result = circle_detectors.check(tmp_path, n_orientations=24, draws=100)
    assert result.summary and result.controls and "|" not in result.summary
    n = result.numbers
    # the weight criterion holds: far more circle units than chance and than the untrained net
    assert n["units"] == 224 and n["draws"] == 100 and n["expected_by_chance"] == 2.24
    assert n["count_criterion"] and n["circle_units"] >= n["needed"] > n["untrained_circle_units"]
    assert n["untrained_detectors_fallback"] and n["detectors"] >= 30     # the untrained control was computed
    # ... but the top circle units answer arcs more than full circles: the claim fails on its stimulus criterion
    assert len(n["control_units"]) == len(n["top"]) and n["ring_ratio_control_median"] is not None
    assert not n["ring_criterion"] and n["ring_ratio_top_median"] < 1.0
    assert result.passed is False
    assert all((tmp_path / f).exists() for f in result.figures)
