"""transformer.icl: the ICL score's bands, the curves read from probe records, and where a curve moves; and the
bundled attention-only cards' curves, whose final ICL score is reproduced on fresh held-out text."""

import pytest

from mechscope.errors import MechscopeError
from mechscope.transformer.icl import (EARLY, LATE, curves, formation_step, icl_score, steepest_window,
                                       window_change)


def _probe(step, late_loss, induction, n_layers=2):
    position_loss = [3.0] * (LATE[0] - 1) + [late_loss] * (127 - LATE[0] + 1)
    return {"step": step, "held_out_loss": sum(position_loss) / 127, "position_loss": position_loss,
            "induction": [[0.0, 0.0]] * (n_layers - 1) + [[induction, 0.1]],
            "previous_token": [[0.2, 0.0]] * n_layers}


def test_icl_score_is_late_band_minus_early_band():
    loss = [float(t) for t in range(1, 128)]          # loss of token t is t
    early = sum(range(*EARLY)) / (EARLY[1] - EARLY[0])
    late = sum(range(*LATE)) / (LATE[1] - LATE[0])
    assert icl_score(loss) == pytest.approx(late - early, abs=1e-4)
    assert icl_score(loss, early=(1, 2), late=(127, 128)) == 126.0
    with pytest.raises(MechscopeError, match="position_loss has 50 entries"):
        icl_score([1.0] * 50)


def test_curves_read_probe_records_in_step_order_and_skip_old_ones():
    probes = [_probe(100, 1.0, 0.8), _probe(0, 3.0, 0.0), {"step": 50, "induction": [[0.0]], "held_out_loss": 3}]
    c = curves(probes)
    assert c["step"] == [0, 100] and c["icl"] == [0.0, -2.0] and c["induction"] == [0.1, 0.8]
    assert curves([_probe(0, 3.0, 0.3, n_layers=1)])["induction"] == [0.3]   # 1 layer: layer 0 is read
    with pytest.raises(MechscopeError, match="predates the ICL probes"):
        curves([{"step": 0, "induction": [[0.0]]}])
    with pytest.raises(MechscopeError, match="layers 0..1"):
        curves(probes, from_layer=2)


def test_formation_and_windows_on_a_falling_and_a_rising_curve():
    steps = [0, 10, 20, 40, 80, 160, 320]
    assert formation_step(steps, [0, 0, 0.2, 0.7, 0.9, 1.0, 1.0]) == 40
    assert formation_step(steps, [5, 5, 4, 3, 1, 1, 1]) == 40          # falling: half-way is 3
    assert window_change(steps, [5, 5, 4, 3, 1, 1, 1], 40) == -3        # from step 20 to step 80
    assert window_change(steps, [5, 5, 4, 3, 1, 1, 1], 320) == 0        # past the end: the last value
    assert steepest_window(steps, [5, 5, 4, 3, 1, 1, 1]) == {"center": 40, "start": 20, "end": 80, "change": -3}
    with pytest.raises(MechscopeError, match="steps must increase"):
        window_change([0, 0], [1, 2], 1)
    with pytest.raises(MechscopeError, match="factor must exceed 1"):
        window_change(steps, [0] * 7, 10, factor=1)


RUNS = ["attn-only-1l", "attn-only-2l", "attn-only-1l-natural", "attn-only-2l-natural"]


@pytest.mark.parametrize("name", RUNS)
def test_bundled_training_curves_are_the_recipes_and_line_up(name):
    from dataclasses import asdict

    from mechscope.reproduce.icl import run_card
    from mechscope.zoo.organisms.attn_only_recipe import AttnOnlyRecipe, natural_recipe

    card = run_card(name)
    n_layers = int(name.split("-")[2][0])
    recipe = natural_recipe(n_layers) if name.endswith("natural") else AttnOnlyRecipe(n_layers=n_layers)
    expected, recorded = json_plain(asdict(recipe)), card["recipe"]
    assert card["name"] == name and {k: v for k, v in expected.items() if k in recorded} == recorded
    assert set(expected) - set(recorded) <= {"variant"}   # the curriculum reruns began before that field existed
    c = curves(card["probes"])
    assert c["step"] == recipe.probe_steps()     # every probe the recipe asks for, once, in order
    assert all(len(p["position_loss"]) == 127 for p in card["probes"])
    assert c["held_out_loss"][0] == pytest.approx(6.96, abs=0.05)   # the initialised model: log(1024) = 6.93
    assert c["held_out_loss"][-1] == card["final"]["held_out_loss"]


def test_curriculum_runs_equal_the_bundled_organisms_through_the_repeated_span_phase():
    from mechscope.reproduce.icl import run_card
    from mechscope.zoo.registry import bundled_card

    for name in ("attn-only-1l", "attn-only-2l"):
        rerun = {r["step"]: r["loss"] for r in run_card(name)["log"]}
        bundled = {r["step"]: r["loss"] for r in bundled_card(name)["log"]}
        assert all(rerun[s] == bundled[s] for s in bundled if s <= 1000), name


def json_plain(value):
    import json

    return json.loads(json.dumps(value))
