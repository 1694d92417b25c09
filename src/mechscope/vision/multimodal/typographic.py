"""Typographic attacks: how often writing a word on a picture flips a zero-shot prediction to that word.

In the paper (Goh et al. 2021), a picture of concept A with the word B written on it is classified as B (an apple
labelled "iPod").  ``typographic_flip_rate(clean, attacked, true, attack_label)`` measures that on logits: among
items the model gets right clean, the fraction predicted ``attack_label`` once attacked (``flip_rate``); also the
fraction that leave the true class for anything (``change_rate``) and the accuracy drop.  The controls are the
same call on other renderings:

- random letter strings (``random_letter_strings``) written instead of B, scored with the same ``attack_label``
  (B): how often the model says B anyway, with equally much ink on the picture;
- the word A itself written on the picture, with ``attack_label = true`` (or ``-1``): no flip target, so
  ``flip_rate`` is NaN and ``change_rate`` / ``accuracy_drop`` say what writing alone costs.

An ``attack_label`` of ``-1`` (or equal to ``true``) marks an item with no flip target; it counts in the accuracy
and ``change_rate`` but not in ``flip_rate``'s denominator.

Example::

    >>> import torch
    >>> clean = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    >>> attacked = torch.tensor([[0, 5.0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 0, 5.0]])
    >>> r = typographic_flip_rate(clean, attacked, torch.tensor([0, 1, 2, 1]), torch.tensor([1, 2, 0, 2]))
    >>> r.flip_rate, r.n_flipped, r.n_eligible, r.clean_accuracy, r.attacked_accuracy
    (0.6666666666666666, 2, 3, 0.75, 0.25)
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from mechscope.errors import MechscopeError


@dataclass(frozen=True)
class FlipRate:
    """Typographic-attack outcome.  ``flip_rate`` = ``n_flipped / n_eligible`` (eligible: right clean, with a
    target other than the true class; NaN when none); ``change_rate``: the fraction of the ``n_correct_clean``
    items that are wrong once attacked (NaN when none); accuracies over all ``n`` items;
    ``accuracy_drop = clean_accuracy - attacked_accuracy``."""

    flip_rate: float
    n_flipped: int
    n_eligible: int
    change_rate: float
    n_correct_clean: int
    clean_accuracy: float
    attacked_accuracy: float
    accuracy_drop: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready (NaN stays NaN; the caller decides how to write it)."""
        return asdict(self)


def _logits(x: torch.Tensor, what: str) -> torch.Tensor:
    t = torch.as_tensor(x).detach()
    if t.dim() != 2:
        raise MechscopeError(f"{what} must be [N, K] logits (items x classes), got shape {tuple(t.shape)}")
    return t


def typographic_flip_rate(
    clean_logits: torch.Tensor, attacked_logits: torch.Tensor, true: torch.Tensor, attack_label: torch.Tensor,
) -> FlipRate:
    """Flip rate of a typographic attack from zero-shot logits ``[N, K]`` on clean and attacked images.

    ``true`` ``[N]``: each item's class; ``attack_label`` ``[N]``: the class of the word written on it (``-1``: none).
    """
    clean, attacked = _logits(clean_logits, "clean_logits"), _logits(attacked_logits, "attacked_logits")
    if clean.shape != attacked.shape:
        raise MechscopeError(f"clean_logits {tuple(clean.shape)} and attacked_logits {tuple(attacked.shape)} must "
                             "have the same shape (the same items, the same classes)")
    n, k = clean.shape
    if n == 0:
        raise MechscopeError("no items: clean_logits has 0 rows")
    labels = []
    for name, v, low in (("true", true, 0), ("attack_label", attack_label, -1)):
        t = torch.as_tensor(v).long().cpu()
        if t.shape != (n,):
            raise MechscopeError(f"{name} must be [{n}] (one class per item), got shape {tuple(t.shape)}")
        if (t < low).any() or (t >= k).any():
            raise MechscopeError(f"{name} must lie in {low}..{k - 1} ({k} classes"
                                 f"{'; -1 = no target' if low < 0 else ''}), found {int(t.min())}..{int(t.max())}")
        labels.append(t)
    y, target = labels
    p_clean, p_attacked = clean.argmax(1).cpu(), attacked.argmax(1).cpu()
    right = p_clean == y
    eligible = right & (target >= 0) & (target != y)
    flipped = eligible & (p_attacked == target)
    changed = right & (p_attacked != y)
    n_el, n_right = int(eligible.sum()), int(right.sum())
    acc_c, acc_a = float(right.double().mean()), float((p_attacked == y).double().mean())
    return FlipRate(
        flip_rate=int(flipped.sum()) / n_el if n_el else float("nan"), n_flipped=int(flipped.sum()), n_eligible=n_el,
        change_rate=int(changed.sum()) / n_right if n_right else float("nan"), n_correct_clean=n_right,
        clean_accuracy=acc_c, attacked_accuracy=acc_a, accuracy_drop=acc_c - acc_a, n=n,
    )


def random_letter_strings(
    n: int, lengths: int | Sequence[int], seed: int = 0, alphabet: str = string.ascii_lowercase,
    exclude: Iterable[str] = (),
) -> list[str]:
    """``n`` random strings over ``alphabet``, a pure function of the arguments (the random-text control).

    ``lengths``: one length for all, or one per string (e.g. the attack words' lengths, so the control writes as
    much text).  Strings in ``exclude`` (e.g. the concept names) are drawn again.

    >>> random_letter_strings(3, [3, 4, 5], seed=1) == random_letter_strings(3, [3, 4, 5], seed=1)
    True
    >>> [len(s) for s in random_letter_strings(3, [3, 4, 5], seed=1)]
    [3, 4, 5]
    """
    if n < 0:
        raise MechscopeError(f"n must be >= 0, not {n}")
    sizes = [lengths] * n if isinstance(lengths, int) else list(lengths)
    if len(sizes) != n:
        raise MechscopeError(f"lengths must be one int or {n} ints (one per string), got {len(sizes)}")
    if any(s < 1 for s in sizes):
        raise MechscopeError(f"lengths must be >= 1, got {min(sizes)}")
    if len(set(alphabet)) < 2:
        raise MechscopeError(f"alphabet needs at least 2 distinct letters, got {alphabet!r}")
    banned = set(exclude)
    rng = np.random.default_rng(seed)
    letters = np.array(list(alphabet))
    out = []
    for size in sizes:
        for _ in range(1000):
            word = "".join(rng.choice(letters, size))
            if word not in banned:
                break
        else:
            raise MechscopeError(f"could not draw a length-{size} string outside exclude in 1000 tries")
        out.append(word)
    return out
