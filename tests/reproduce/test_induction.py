"""The five induction claims on the bundled attention-only organisms: each verdict, and each control computed and
compared (one measurement, cached per process)."""

import pytest

from mechscope.reproduce import induction as I

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("induction")
    return {c.name: c.check(out) for c in I.CLAIMS}


def test_induction_and_previous_token_heads_exist_and_the_one_layer_control_has_none(rows):
    for name, r in rows.items():      # each names its control and says its result in one line
        assert r.summary and r.controls and "|" not in r.summary, name
    n = rows["two-layer-induction-heads"].numbers
    assert n["induction_head"] == "1.3" and n["previous_token_head"] == "0.2"
    assert n["induction_score"] >= I.MIN_INDUCTION and n["previous_token_score"] >= I.MIN_PREVIOUS
    assert n["one_layer_best_induction"] <= I.MAX_ONE_LAYER_INDUCTION            # the control model
    assert rows["two-layer-induction-heads"].passed is True


def test_k_composition_separates_previous_token_heads_beyond_the_random_spread(rows):
    r = rows["k-composition-prev-to-induction"]
    n, sep = r.numbers, r.numbers["control_other_heads"]
    # measured: previous-token heads 0.2 / 0.3 at 0.152 / 0.151, the other heads 0.138 / 0.133, random heads
    # 0.088 ± 0.0024: a margin of 0.013, 3.7 std of the difference of two random heads' scores
    assert n["previous_token_heads"] == ["0.2", "0.3"] and n["strongest_from"] == "0.2"
    assert sep["strongest_other"] < sep["weakest_previous"] and 0 < n["random_baseline_std"] < 0.01
    assert sep["margin_in_random_sigmas"] == pytest.approx(sep["margin"] / sep["random_difference_sigma"], abs=0.1)
    assert sep["margin_in_random_sigmas"] >= I.K_MARGIN_SIGMAS and r.passed is True
    # every head composes above the random mean: the excess alone would not tell them apart
    assert min(n["excess_over_baseline_previous_vs_other"]) > 0.04


def test_k_separation_fails_when_another_head_composes_as_strongly():
    assert I.k_separation([0.150, 0.133, 0.152, 0.151], [2, 3], 0.0024)["margin_in_random_sigmas"] < I.K_MARGIN_SIGMAS


def test_induction_head_copies_and_its_untrained_twin_does_not(rows):
    n = rows["induction-head-copies"].numbers
    assert n["copying_score"] >= I.MIN_COPYING > n["control_untrained_same_head"]
    assert rows["induction-head-copies"].passed is True


def test_ablating_previous_token_heads_collapses_induction_and_ablating_the_others_does_not(rows):
    n = rows["ablating-prev-token-head"].numbers
    assert n["previous_token_heads"] == ["0.2", "0.3"] and n["control_other_heads"] == ["0.0", "0.1"]
    assert n["induction_after"] <= I.MAX_ABLATED_SHARE * n["induction_before"]
    assert n["control_induction_after_ablating_other_heads"] > I.MAX_ABLATED_SHARE * n["induction_before"]
    # one previous-token head alone is not enough: the other keeps part of the induction
    assert n["induction_after_ablating_it_alone"] > n["induction_after"]
    assert rows["ablating-prev-token-head"].passed is True


def test_one_layer_heads_copy_and_untrained_heads_do_not(rows):
    n = rows["one-layer-heads-copy"].numbers
    assert n["share_copying"] > I.MIN_COPYING_HEADS_SHARE >= n["control_untrained_share_copying"]
    assert len(n["control_untrained_copying_scores"]) == len(n["copying_scores"]) == 4
    assert rows["one-layer-heads-copy"].passed is True
