"""The hand-written curve detector against the distribution of the organism's learned detectors and against
shuffled-weights copies of itself (36 orientations and two designed orientations to keep the test short)."""

import pytest

from mechscope.reproduce import handmade_curve as H

pytestmark = pytest.mark.usefixtures("one_thread")


def test_handmade_detector_against_learned_detectors_and_shuffled_controls(tmp_path):
    result = H.check(tmp_path, n_orientations=36, designed=(0.0, 135.0))
    assert result.summary and result.controls and "|" not in result.summary
    n = result.numbers
    assert n["max_orientation_error_deg"] <= H.MAX_ERROR and n["learned_detectors"] > 10
    # the distribution over learned detectors, not only the best (measured: best 0.88, median 0.70)
    lo, hi = n["match_quartiles_over_learned"]
    assert lo <= n["median_match_to_learned"] <= hi <= n["best_match_to_learned"]
    assert n["best_match_to_learned"] >= H.MIN_MATCH
    # the control is computed and compared: every shuffled copy matches the learned detectors worse
    assert len(n["control_shuffled"]) == H.SHUFFLES
    assert n["median_match_to_learned"] > n["control_shuffled_highest_median"]
    assert n["best_match_to_learned"] > n["control_shuffled_highest_best"]
    # the verdict at this size: at 36 orientations the 135 deg design prefers curves only 1.44x over lines,
    # short of MIN_PREFERENCE, so the claim fails here (the default run: see the module docstring)
    assert n["min_curve_preference"] < H.MIN_PREFERENCE and result.passed is False


def test_shuffling_keeps_the_weights_and_destroys_the_arc():
    import torch

    from mechscope.vision.circuits.handmade import curve_circuit

    net = curve_circuit(orientation=0.0)
    a, b = H._last_conv(H.shuffled(net, 0)).weight, H._last_conv(H.shuffled(net, (1, 0))).weight
    assert a.shape == (1, 8, 21, 21) and b.shape == (2, 8, 21, 21) and torch.equal(a[0], b[1])   # seeded
    assert not torch.equal(b[0], b[1]) and torch.equal(b[0].flatten().sort().values, b[1].flatten().sort().values)
