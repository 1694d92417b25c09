"""In-context learning over training (*In-context Learning and Induction Heads*, Olsson et al. 2022): the
in-context-learning score from per-position losses, and where in training it and the induction heads change.

The paper's **ICL score** is the loss at the 500th token of a context minus the loss at the 50th, averaged over
held-out text: how much later tokens gain from the context before them (negative is better).  Our organisms read
128 tokens, so the score keeps the paper's 10x ratio with bands, to average out single positions' noise:
``LATE`` (tokens 100–127, mean position 113.5) minus ``EARLY`` (tokens 8–15, mean position 11.5).

Training curves come as the attention-only recipe's probe records (``card["probes"]``: per probe ``step``,
``position_loss [n_ctx - 1]`` (entry ``i``: the loss of predicting token ``i + 1``), per-head ``induction`` and
``previous_token`` scores ``[n_layers][n_heads]``), read by :func:`curves`.  The phase change is located by
:func:`formation_step`: the first probe at which a curve has covered half of its way from its start to its end.
:func:`window_change` measures a curve's change across a window of steps ``[step / factor, step * factor]`` and
:func:`steepest_window` finds the window of that width where a curve falls most.

Example (a made-up run whose ICL score drops when its induction score rises, around step 100)::

    >>> steps = [0, 10, 30, 100, 300, 1000]
    >>> induction = [0.0, 0.0, 0.1, 0.5, 0.9, 0.9]
    >>> icl = [0.0, 0.0, -0.1, -0.6, -1.0, -1.0]
    >>> formation_step(steps, induction)
    100
    >>> window_change(steps, icl, 100, factor=3.0)   # from step 30 to step 300
    -0.9
    >>> steepest_window(steps, icl, factor=3.0)
    {'center': 100, 'start': 30, 'end': 300, 'change': -0.9}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mechscope.errors import MechscopeError

EARLY = (8, 16)     # tokens 8..15 (predicted from the tokens before them)
LATE = (100, 128)   # tokens 100..127

__all__ = ["EARLY", "LATE", "icl_score", "curves", "formation_step", "window_bounds", "window_change",
           "steepest_window"]


def icl_score(position_loss: Sequence[float], early: tuple[int, int] = EARLY,
              late: tuple[int, int] = LATE) -> float:
    """Mean loss over the ``late`` tokens minus mean loss over the ``early`` ones (token ``t`` is predicted by
    ``position_loss[t - 1]``; bands are half-open ``[start, end)``).  Needs ``len(position_loss) >= late[1] - 1``.

    >>> icl_score([2.0] * 20 + [1.0] * 107)
    -1.0
    """
    n = len(position_loss)
    if not (1 <= early[0] < early[1] <= late[0] < late[1] <= n + 1):
        raise MechscopeError(f"ICL bands early={early}, late={late} need tokens 1..{n} "
                             f"(position_loss has {n} entries, one per predicted token)")
    mean = lambda a, b: sum(position_loss[a - 1: b - 1]) / (b - a)   # noqa: E731
    return round(mean(*late) - mean(*early), 4)


def curves(probes: Sequence[Mapping[str, Any]], *, from_layer: int | None = None) -> dict[str, list]:
    """The training curves of one run from its probe records (sorted by step): ``step``, ``icl`` (the ICL score),
    ``held_out_loss``, ``induction`` (the best induction score over the heads of layers ``>= from_layer``;
    default: layer 1 when the model has two or more layers, else 0 — an induction head needs a layer before it)
    and ``previous_token`` (the best over all heads).  Probes without ``position_loss`` are skipped."""
    rows = sorted((p for p in probes if p.get("position_loss")), key=lambda p: p["step"])
    if not rows:
        raise MechscopeError("no probe records with position_loss: the run predates the ICL probes; retrain it "
                             "with the current recipe (mechscope train attn-only)")
    n_layers = len(rows[0]["induction"])
    first = (1 if n_layers > 1 else 0) if from_layer is None else from_layer
    if not 0 <= first < n_layers:
        raise MechscopeError(f"from_layer={from_layer} but the model has layers 0..{n_layers - 1}")
    return {"step": [int(p["step"]) for p in rows],
            "icl": [icl_score(p["position_loss"]) for p in rows],
            "held_out_loss": [float(p["held_out_loss"]) for p in rows],
            "induction": [max(max(layer) for layer in p["induction"][first:]) for p in rows],
            "previous_token": [max(max(layer) for layer in p["previous_token"]) for p in rows]}


def formation_step(steps: Sequence[int], values: Sequence[float]) -> int:
    """The first step at which ``values`` has covered half its way from its first to its last value."""
    _check(steps, values)
    start, end = values[0], values[-1]
    half = start + 0.5 * (end - start)
    rising = end >= start
    return next(s for s, v in zip(steps, values) if (v >= half if rising else v <= half))


def window_bounds(steps: Sequence[int], center: float, *, factor: float = 2.0) -> tuple[int, int]:
    """The probe steps that bound the window ``[center / factor, center * factor]``: the last at or before its start
    and the first at or after its end (the last step when the window runs past the end of training).

    >>> window_bounds([0, 10, 30, 100, 300, 1000], 100, factor=3.0)
    (30, 300)
    """
    if factor <= 1:
        raise MechscopeError(f"factor must exceed 1, got {factor}")
    start = [s for s in steps if s <= center / factor][-1]
    end = next((s for s in steps if s >= center * factor), steps[-1])
    return int(start), int(end)


def window_change(steps: Sequence[int], values: Sequence[float], center: float, *, factor: float = 2.0) -> float:
    """``values`` at the end of the window ``window_bounds(steps, center, factor=factor)`` minus at its start."""
    _check(steps, values)
    start, end = window_bounds(steps, center, factor=factor)
    return round(values[steps.index(end)] - values[steps.index(start)], 4)


def steepest_window(steps: Sequence[int], values: Sequence[float], *, factor: float = 2.0) -> dict[str, Any]:
    """The window ``[center / factor, center * factor]`` (``center`` a probe step >= ``factor``) over which
    ``values`` falls most: its ``center``, the probe steps that bound it and the ``change``."""
    _check(steps, values)
    best: dict[str, Any] | None = None
    for center in steps:
        if center < factor:
            continue
        change = window_change(steps, values, center, factor=factor)
        if best is None or change < best["change"]:
            start, end = window_bounds(steps, center, factor=factor)
            best = {"center": int(center), "start": start, "end": end, "change": change}
    if best is None:
        raise MechscopeError(f"no probe step >= {factor} to center a window on")
    return best


def _check(steps: Sequence[int], values: Sequence[float]) -> None:
    if len(steps) != len(values) or len(steps) < 2:
        raise MechscopeError(f"need at least two (step, value) pairs of equal length, got {len(steps)} steps and "
                             f"{len(values)} values")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise MechscopeError("steps must increase")
