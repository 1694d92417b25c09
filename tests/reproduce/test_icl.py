"""The ICL claims' verdicts follow their stated conditions, on made-up training curves where the answer is known:
a 2-layer run whose ICL score drops as its induction head forms and a 1-layer run that improves slowly pass; a
1-layer run that improves as abruptly as the 2-layer one fails both claims (the criterion can fail)."""

import pytest

from mechscope.reproduce import icl as claim
from mechscope.reproduce.registry import get_claims
from mechscope.transformer.icl import LATE

STEPS = [0, 10, 20, 40, 80, 160, 320, 640, 1280]


def _probes(late_losses, inductions, n_layers):
    out = []
    for step, late, ind in zip(STEPS, late_losses, inductions):
        position_loss = [3.0] * (LATE[0] - 1) + [late] * (127 - LATE[0] + 1)
        out.append({"step": step, "held_out_loss": 3.0, "position_loss": position_loss,
                    "induction": [[0.0, 0.0]] * (n_layers - 1) + [[ind, 0.0]],
                    "previous_token": [[0.0, 0.0]] * n_layers})
    return out


TWO = _probes([3.0, 3.0, 2.9, 2.5, 1.6, 1.5, 1.5, 1.45, 1.4], [0, 0, 0.05, 0.3, 0.8, 0.9, 0.9, 0.9, 0.9], 2)
ONE_SLOW = _probes([3.0, 2.98, 2.95, 2.9, 2.85, 2.8, 2.75, 2.7, 2.65], [0.01] * 9, 1)
ONE_ABRUPT = _probes([3.0, 3.0, 2.9, 2.5, 1.6, 1.5, 1.5, 1.45, 1.4], [0.01] * 9, 1)


def _with_cards(monkeypatch, one, two):
    """Both pairs (the natural runs the verdicts read, the curriculum organisms reported beside) get these curves."""
    cards = {name: {"probes": probes} for pair in (claim.NATURAL, claim.CURRICULUM)
             for name, probes in zip(pair, (one, two))}
    monkeypatch.setattr(claim, "run_card", lambda name: cards[name])
    claim.measure.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_cache():
    claim.measure.cache_clear()
    yield
    claim.measure.cache_clear()


def test_abrupt_two_layer_and_slow_one_layer_pass(monkeypatch, tmp_path):
    _with_cards(monkeypatch, ONE_SLOW, TWO)
    m = claim.measure()["natural"]
    assert m["formation_step"] == 80 and m["window"] == [40, 160]
    assert m["two_window_change"] == pytest.approx(-1.0) and m["two_whole_improvement"] == pytest.approx(1.6)
    phase = claim._phase_change(tmp_path)
    assert phase.passed and phase.numbers["share_of_improvement_in_window"] == pytest.approx(0.625)
    assert (tmp_path / "icl_phase_change.png").stat().st_size > 0 and phase.figures == ["icl_phase_change.png"]
    one = claim._one_layer(tmp_path)
    assert one.passed and one.numbers["best_induction_any_step_1l"] == 0.01
    assert phase.numbers["curriculum_organisms"]["share_of_improvement_in_window"] == pytest.approx(0.625)


def test_a_one_layer_run_as_abrupt_as_the_two_layer_one_fails_both(monkeypatch, tmp_path):
    _with_cards(monkeypatch, ONE_ABRUPT, TWO)
    phase, one = claim._phase_change(tmp_path), claim._one_layer(tmp_path)
    assert phase.numbers["control_ratio_1l_to_2l"] == 1.0 and not phase.passed
    assert one.numbers["ratio_steepest_1l_to_2l"] == 1.0 and not one.passed


def test_a_gradual_two_layer_improvement_fails(monkeypatch, tmp_path):
    gradual = _probes([3.0, 2.85, 2.7, 2.55, 2.4, 2.25, 2.1, 1.95, 1.8], [0, 0.1, 0.2, 0.3, 0.45, 0.6, 0.7, 0.8, 0.9], 2)
    _with_cards(monkeypatch, ONE_SLOW, gradual)
    r = claim._phase_change(tmp_path)
    assert r.numbers["share_of_improvement_in_window"] < claim.MIN_WINDOW_SHARE and not r.passed


def test_the_claims_are_registered_in_the_transformer_area():
    assert [c.area for c in get_claims(["icl-phase-change", "icl-no-phase-change-one-layer"])] == ["transformer"] * 2
