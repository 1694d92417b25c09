"""Claims of *In-context Learning and Induction Heads* (Olsson et al. 2022) on the bundled attention-only organisms'
training curves: the in-context-learning (ICL) score improves abruptly when induction heads form, in the 2-layer
model only.

The curves are the probe records in the organisms' cards (``card["probes"]``): the attention-only recipe
(``zoo.organisms.attn_only_recipe``) records, at step 0, at 40 log-spaced steps from 10 to 6000 and every 500
steps, the per-position loss on 256 held-out rows of natural text and every head's induction and previous-token
scores on ``[BOS] r r``.  ``transformer.icl`` turns them into the ICL score (loss at tokens 100–127 minus loss at
tokens 8–15) and the best induction score of the layers that can hold an induction head (layer 1 of the 2-layer
model; layer 0 of the 1-layer model, which has nothing before it to compose with).

* ``icl-phase-change``: in the 2-layer model, the window of training around the step where the induction score
  has covered half its rise — ``[step / WINDOW_FACTOR, step * WINDOW_FACTOR]``, a factor of 4 of the run's 600x
  log-spaced span — holds at least ``MIN_WINDOW_SHARE`` of the ICL score's whole improvement (its value at step 0
  minus its lowest value), an induction head has formed by the window's end (score >= ``MIN_INDUCTION``), and
  the control — the 1-layer model over the same window — improves by at most ``MAX_CONTROL_RATIO`` of the 2-layer
  model's improvement there.
* ``icl-no-phase-change-one-layer``: the 1-layer model never has an induction score above
  ``MAX_ONE_LAYER_INDUCTION`` at any probe, and its steepest factor-4 window of ICL improvement is at most
  ``MAX_CONTROL_RATIO`` of the 2-layer model's steepest (the control: the 2-layer model, which does have one).

Thresholds, fixed before the curves were recorded (they were first written when the probes were added): half the
improvement within a quarter of log-time is "abrupt"; half the other model's change is "does not"; 0.4 and 0.1 are
the induction margins of ``reproduce.induction`` (40% of attention on the induction diagonal; a quarter of that).
The bundled runs follow a curriculum (repeated random spans first, natural text from step 1000), so induction
forms early; the claim is about *when the ICL score moves relative to the induction head*, which the curriculum
does not decide for it: the ICL score is measured on natural text throughout.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from mechscope.reproduce.claims import Claim, Result, fmt

PAPER = "In-context Learning and Induction Heads (Olsson et al., 2022)"
WINDOW_FACTOR = 2.0           # the phase-change window: [step / 2, step * 2]
MIN_WINDOW_SHARE = 0.5        # share of the ICL score's whole improvement inside that window
MIN_INDUCTION = 0.4           # an induction head has formed (reproduce.induction's margin)
MAX_ONE_LAYER_INDUCTION = 0.1 # the 1-layer model has none (reproduce.induction's control margin)
MAX_CONTROL_RATIO = 0.5       # "does not": at most half the other model's improvement
MODELS = ("attn-only-1l", "attn-only-2l")


@lru_cache(maxsize=1)
def measure() -> dict:
    """Both organisms' curves (``transformer.icl.curves``) and the windows the claims read."""
    from mechscope.transformer.icl import curves, formation_step, steepest_window, window_change
    from mechscope.zoo.registry import bundled_card

    c = {name: curves(bundled_card(name)["probes"]) for name in MODELS}
    one, two = c["attn-only-1l"], c["attn-only-2l"]
    if one["step"] != two["step"]:
        raise AssertionError("the two organisms' probes are at different steps; retrain with the same recipe")
    formed = formation_step(two["step"], two["induction"])
    steps = two["step"]
    start = [s for s in steps if s <= formed / WINDOW_FACTOR][-1]
    end = next((s for s in steps if s >= formed * WINDOW_FACTOR), steps[-1])
    at = lambda curve, s: curve[steps.index(s)]   # noqa: E731
    return {
        "curves": c, "formation_step": formed, "window": [start, end],
        "two_window_change": window_change(steps, two["icl"], formed, factor=WINDOW_FACTOR),
        "one_window_change": window_change(steps, one["icl"], formed, factor=WINDOW_FACTOR),
        "two_whole_improvement": round(two["icl"][0] - min(two["icl"]), 4),
        "two_induction_at_window_end": at(two["induction"], end),
        "two_steepest": steepest_window(steps, two["icl"], factor=WINDOW_FACTOR),
        "one_steepest": steepest_window(steps, one["icl"], factor=WINDOW_FACTOR),
    }


def _figure(out: Path, m: dict) -> str:
    from mechscope.plots import new_figure, save_figure

    fig, axes = new_figure(1, 2, figsize=(10, 3.6))
    for name, color in zip(MODELS, ("tab:gray", "tab:blue")):
        c = m["curves"][name]
        steps = [max(s, 1) for s in c["step"]]   # step 0 drawn at 1 on the log axis
        axes[0].plot(steps, c["icl"], marker=".", color=color, label=name)
        axes[1].plot(steps, c["induction"], marker=".", color=color, label=name)
    for ax, title in zip(axes, ("ICL score (loss at tokens 100-127 minus tokens 8-15), nats",
                                "best induction score (layer >= 1; 1-layer: layer 0)")):
        ax.axvspan(*m["window"], color="tab:orange", alpha=0.15, label="phase-change window")
        ax.set_xscale("log")
        ax.set_xlabel("training step (step 0 at 1)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    path = out / "icl_phase_change.png"
    save_figure(fig, path)
    return path.name


def _r(x: float) -> float:
    return round(float(x), 3)


def _phase_change(out: Path) -> Result:
    m = measure()
    whole, inside, control = m["two_whole_improvement"], m["two_window_change"], m["one_window_change"]
    share = -inside / whole if whole > 0 else 0.0
    ratio = control / inside if inside < 0 else float("inf")
    passed = (share >= MIN_WINDOW_SHARE and m["two_induction_at_window_end"] >= MIN_INDUCTION
              and ratio <= MAX_CONTROL_RATIO)
    two = m["curves"]["attn-only-2l"]
    numbers = {"induction_half_formed_at_step": m["formation_step"], "window_steps": m["window"],
               "icl_change_in_window_2l": _r(inside), "icl_whole_improvement_2l": _r(whole),
               "share_of_improvement_in_window": _r(share),
               "induction_at_window_end_2l": _r(m["two_induction_at_window_end"]),
               "icl_start_final_min_2l": [_r(two["icl"][0]), _r(two["icl"][-1]), _r(min(two["icl"]))],
               "control_icl_change_in_window_1l": _r(control),
               "control_ratio_1l_to_2l": _r(ratio) if ratio != float("inf") else None,
               "steepest_window_2l": m["two_steepest"]}
    summary = (f"induction half-formed at step {m['formation_step']}; steps {m['window'][0]}–{m['window'][1]} hold "
               f"{fmt(_r(share))} of the 2-layer ICL improvement ({fmt(_r(inside))} of {fmt(_r(-whole))} nats); "
               f"1-layer over the same steps {fmt(_r(control))}")
    return Result(numbers, passed, [_figure(out, m)], controls={"icl_change_in_window_1l": _r(control)},
                  summary=summary,
                  note="ICL score: mean loss at tokens 100-127 minus tokens 8-15 of 256 held-out rows of natural "
                  "text (transformer.icl), at the probes the recipe recorded while training (the cards' probes).")


def _one_layer(out: Path) -> Result:
    m = measure()
    one = m["curves"]["attn-only-1l"]
    best_induction = max(one["induction"])
    steep_one, steep_two = m["one_steepest"]["change"], m["two_steepest"]["change"]
    ratio = steep_one / steep_two if steep_two < 0 else float("inf")
    passed = best_induction <= MAX_ONE_LAYER_INDUCTION and ratio <= MAX_CONTROL_RATIO
    numbers = {"best_induction_any_step_1l": _r(best_induction), "steepest_window_1l": m["one_steepest"],
               "control_steepest_window_2l": m["two_steepest"],
               "ratio_steepest_1l_to_2l": _r(ratio) if ratio != float("inf") else None,
               "icl_start_final_min_1l": [_r(one["icl"][0]), _r(one["icl"][-1]), _r(min(one["icl"]))]}
    summary = (f"1-layer: best induction score {fmt(_r(best_induction))} at any step; steepest ICL drop "
               f"{fmt(_r(steep_one))} nats (steps {m['one_steepest']['start']}–{m['one_steepest']['end']}) vs the "
               f"2-layer model's {fmt(_r(steep_two))}")
    return Result(numbers, passed, [], controls={"steepest_window_2l": m["two_steepest"]}, summary=summary,
                  note="Windows span a factor of 4 in steps ([s / 2, 2 s] over the probe steps).")


CLAIMS = (
    Claim("icl-phase-change", PAPER,
          "in the 2-layer model the in-context-learning score improves abruptly when the induction head forms",
          f"the window [s/{WINDOW_FACTOR:g}, {WINDOW_FACTOR:g}s] around the step s where the best layer-1 induction "
          f"score is half-formed holds >= {MIN_WINDOW_SHARE} of the ICL score's whole improvement, the induction "
          f"score is >= {MIN_INDUCTION} by its end, and the 1-layer model improves by <= {MAX_CONTROL_RATIO} x that "
          "over the same window", _phase_change),
    Claim("icl-no-phase-change-one-layer", PAPER,
          "the 1-layer model, which forms no induction head, has no such phase change",
          f"best induction score <= {MAX_ONE_LAYER_INDUCTION} at every probe, and the steepest factor-4 window of ICL "
          f"improvement <= {MAX_CONTROL_RATIO} x the 2-layer model's", _one_layer),
)
