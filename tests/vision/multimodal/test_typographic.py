"""Typographic attacks: flip-rate arithmetic on hand-made logits, the two controls through the same function, the
random-letter control strings, and bad input."""

import math

import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.vision.multimodal import random_letter_strings, typographic_flip_rate


def _logits(predictions, k=4):
    """One-hot logits [N, k] that predict ``predictions``."""
    return torch.nn.functional.one_hot(torch.tensor(predictions), k).float() * 5.0


def test_flip_rate_counts_only_items_right_clean():
    true = torch.tensor([0, 1, 2, 3, 0, 1])
    clean = _logits([0, 1, 2, 3, 0, 2])                # item 5 wrong clean: never eligible
    attacked = _logits([1, 1, 0, 3, 3, 3])             # 0 -> its target, 2 -> its target, 4 -> not its target
    target = torch.tensor([1, 2, 0, 1, 2, 3])
    r = typographic_flip_rate(clean, attacked, true, target)
    assert (r.n, r.n_correct_clean, r.n_eligible, r.n_flipped) == (6, 5, 5, 2)
    assert r.flip_rate == pytest.approx(2 / 5)
    assert r.change_rate == pytest.approx(3 / 5)        # items 0, 2, 4 left their class
    assert r.clean_accuracy == pytest.approx(5 / 6)
    assert r.attacked_accuracy == pytest.approx(2 / 6)
    assert r.accuracy_drop == pytest.approx(3 / 6)
    assert r.as_dict()["n_flipped"] == 2


def test_controls_use_the_same_function():
    true = torch.tensor([0, 1, 2, 3])
    clean = _logits([0, 1, 2, 3])
    # the word A itself: no flip target (attack_label = true or -1); flip rate undefined, accuracy cost measured
    own_word = typographic_flip_rate(clean, _logits([0, 1, 2, 0]), true, true)
    assert math.isnan(own_word.flip_rate) and own_word.n_eligible == 0
    assert own_word.change_rate == pytest.approx(0.25) and own_word.accuracy_drop == pytest.approx(0.25)
    none = typographic_flip_rate(clean, _logits([0, 1, 2, 0]), true, torch.full((4,), -1))
    assert math.isnan(none.flip_rate) and none.change_rate == own_word.change_rate
    # random letters scored against the real attack's targets: how often the target is said anyway
    targets = torch.tensor([1, 2, 3, 0])
    real = typographic_flip_rate(clean, _logits([1, 2, 3, 3]), true, targets)
    random_letters = typographic_flip_rate(clean, _logits([0, 1, 3, 3]), true, targets)
    assert real.flip_rate == pytest.approx(0.75) and random_letters.flip_rate == pytest.approx(0.25)


def test_nothing_right_clean_gives_nan_rates():
    r = typographic_flip_rate(_logits([1, 0]), _logits([1, 0]), torch.tensor([0, 1]), torch.tensor([1, 0]))
    assert math.isnan(r.flip_rate) and math.isnan(r.change_rate) and r.clean_accuracy == 0.0


def test_random_letter_strings_are_seeded_sized_and_avoid_excluded_words():
    a = random_letter_strings(5, [3, 4, 5, 6, 7], seed=3)
    assert a == random_letter_strings(5, [3, 4, 5, 6, 7], seed=3)
    assert a != random_letter_strings(5, [3, 4, 5, 6, 7], seed=4)
    assert [len(s) for s in a] == [3, 4, 5, 6, 7] and all(s.isalpha() and s.islower() for s in a)
    assert all(len(s) == 4 for s in random_letter_strings(10, 4))
    two = random_letter_strings(50, 1, seed=0, alphabet="ab", exclude=["a"])
    assert set(two) == {"b"}
    assert random_letter_strings(0, []) == []


@pytest.mark.parametrize("call, message", [
    (lambda: typographic_flip_rate(torch.ones(3), torch.ones(3), torch.zeros(3), torch.zeros(3)), r"\[N, K\]"),
    (lambda: typographic_flip_rate(torch.ones(3, 2), torch.ones(3, 4), torch.zeros(3), torch.zeros(3)), "same shape"),
    (lambda: typographic_flip_rate(torch.ones(3, 2), torch.ones(3, 2), torch.zeros(2), torch.zeros(3)), r"\[3\]"),
    (lambda: typographic_flip_rate(torch.ones(3, 2), torch.ones(3, 2), torch.tensor([0, 1, 2]), torch.zeros(3)),
     r"true must lie in 0\.\.1"),
    (lambda: typographic_flip_rate(torch.ones(3, 2), torch.ones(3, 2), torch.zeros(3), torch.tensor([0, -2, 1])),
     r"-1 = no target"),
    (lambda: typographic_flip_rate(torch.ones(0, 2), torch.ones(0, 2), torch.zeros(0), torch.zeros(0)), "no items"),
    (lambda: random_letter_strings(3, [1, 2]), "one per string"),
    (lambda: random_letter_strings(2, 0), ">= 1"),
    (lambda: random_letter_strings(2, 2, alphabet="aa"), "2 distinct"),
    (lambda: random_letter_strings(1, 1, alphabet="ab", exclude=["a", "b"]), "outside exclude"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(MechscopeError, match=message):
        call()
