import dataclasses

import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.reproduce import multimodal as mm

torch.set_num_threads(1)


def test_multimodal_units_beat_the_untrained_control(tmp_path):
    r = mm.check_multimodal_units(tmp_path, controls=("untrained",), per_cell=4)
    assert r.passed is True and r.numbers["multimodal_units"] >= mm.MIN_UNITS
    # the control was computed, per untrained seed and layer, and named in the result's controls
    assert set(r.controls["counts"]) == {f"untrained_seed{s}" for s in mm.UNTRAINED_SEEDS}
    assert r.numbers["control_max"] + mm.MIN_EXCESS <= r.numbers["multimodal_units"]
    assert "untrained_seed0" in r.summary and set(r.numbers["counts"]) == set(mm.LAYERS)


def test_multimodal_units_fail_when_the_model_is_its_own_control(tmp_path, monkeypatch):
    real = mm._model

    def untrained_everywhere(name, seed=0):
        return real("untrained", seed) if name == mm.MODEL else real(name, seed)

    monkeypatch.setattr(mm, "_model", untrained_everywhere)
    monkeypatch.setattr(mm, "_report", mm._report.__wrapped__)
    r = mm.check_multimodal_units(tmp_path, controls=("untrained",), per_cell=2)
    assert r.passed is False and r.numbers["multimodal_units"] < mm.MIN_UNITS


def test_a_missing_control_model_is_an_error_naming_it(tmp_path):
    with pytest.raises(MechscopeError, match="shapes-clip-shufled"):
        mm.check_multimodal_units(tmp_path, controls=("untrained", "shapes-clip-shufled"), per_cell=2)
    with pytest.raises(MechscopeError, match="at least one control"):
        mm.check_multimodal_units(tmp_path, controls=(), per_cell=2)


def test_text_side_names_the_concept_above_random_directions_and_untrained(tmp_path):
    r = mm.check_text_side(tmp_path, k=16, draws=3, per_cell=4)
    assert r.passed is True
    assert set(r.controls) == {"random_directions", "untrained_seed0", "untrained_seed1"}
    assert all(r.numbers["names_concept_rate"] - v >= mm.NAME_RATE_EXCESS for v in r.controls.values())
    assert 0 < r.numbers["chance_share_of_texts"] < 0.2 and len(r.numbers["examples"]) == 8


def test_typographic_attack_flips_to_the_written_word_and_its_own_name_keeps_accuracy(tmp_path):
    r = mm.check_typographic(tmp_path, n=60)
    assert r.numbers["flip_passed"] is True and r.numbers["own_word_passed"] is True and r.passed is True
    assert r.numbers["flip_rate"] >= mm.FLIP_RATIO * r.controls["random_letters_flip_rate"]
    assert r.controls["own_word_drop"] <= mm.OWN_WORD_MAX_DROP and "missed" not in r.summary


def test_typographic_claim_fails_on_the_shuffled_caption_control(tmp_path, monkeypatch):
    real = mm._model
    monkeypatch.setattr(mm, "_model", lambda name, seed=0: real("shapes-clip-shuffled" if name == mm.MODEL else name,
                                                                seed))
    r = mm.check_typographic(tmp_path, n=60)
    assert r.passed is False and r.numbers["flip_passed"] is False and "missed: flip" in r.summary


def test_typographic_claim_fails_when_writing_the_own_name_costs_accuracy(tmp_path, monkeypatch):
    """The verdict's own-word branch: the first shapes-clip (every labelled picture captioned by its label) lost
    0.29 accuracy to its own name; a report with that drop must fail however well the attack flips."""
    real = mm.typographic_attack

    def costly_own_word(model, n, **kw):
        r = real(model, n=n, **kw)
        own = dataclasses.replace(r.own_word, attacked_accuracy=r.own_word.clean_accuracy - 0.29)
        return dataclasses.replace(r, own_word=own)

    monkeypatch.setattr(mm, "typographic_attack", costly_own_word)
    r = mm.check_typographic(tmp_path, n=30)
    assert r.passed is False and r.numbers["own_word_passed"] is False and "missed: own-word" in r.summary


def test_superordinate_units_beat_the_untrained_network(tmp_path):
    r = mm.check_superordinate(tmp_path, per_cell=4)
    assert r.passed is True and r.numbers["superordinate_units"] >= mm.MIN_UNITS
    assert set(r.controls) == {f"untrained_seed{s}" for s in mm.UNTRAINED_SEEDS}
    assert sum(r.numbers["per_group"].values()) == r.numbers["superordinate_units"]


def test_claims_are_listed_with_distinct_names():
    assert [c.name for c in mm.CLAIMS] == ["multimodal-units", "text-side-names-concept", "typographic-attacks",
                                           "superordinate-units"]
