"""Claims of *In-context Learning and Induction Heads* (Olsson et al. 2022) on attention-only training runs' curves:
the in-context-learning (ICL) score improves abruptly when induction heads form, in the 2-layer model only.

The curves are probe records (``card["probes"]``): the attention-only recipe (``zoo.organisms.attn_only_recipe``)
records, at step 0, at 40 log-spaced steps from 10 to the last step (6000 for the curriculum organisms, 20000
for the natural runs) and every 500 steps, the per-position loss on 256
held-out rows of natural text and every head's induction and previous-token scores on ``[BOS] r r``.
``transformer.icl`` turns them into the ICL score (loss at tokens 100–127 minus loss at tokens 8–15) and the best
induction score of the layers that can hold an induction head (layer 1 of the 2-layer model; layer 0 of the
1-layer model, which has nothing before it to compose with).

The verdicts read the ``NATURAL`` runs: ``attn-only-{1,2}l-natural`` (``natural_recipe``: natural text from step 0,
a natural row carrying a copied span with probability 0.3; 20000 steps, history below). The bundled organisms'
recipe (``CURRICULUM``) is measured the same way and reported beside (``curriculum_organisms``): its first 1000
steps see only repeated random spans, during which the natural-text loss rises and the ICL score gets *worse* as the
heads form — it measures that switch of training distribution, not only the heads, which is why the verdicts moved
to the natural runs (history below). All four runs are bundled as curves only (``zoo/organisms/<name>.curves.json``,
with the sha256 of the weights they made; ``mechscope train attn-only --layers N [--natural]`` makes them). The
curriculum runs are the bundled organisms' recipe run again to record the probes: bit-identical to the bundled runs
through step 1000 (the repeated-span phase, where the heads form), different after it, because this machine's corpus
(its man pages) has changed since the bundled organisms were trained.

* ``icl-phase-change``: in the 2-layer run, the window of training around the step where the induction score has
  covered half its rise — ``[step / WINDOW_FACTOR, step * WINDOW_FACTOR]``, a factor of 4 of the runs' 600x
  (curriculum) or 2000x (natural) log-spaced spans — holds at least ``MIN_WINDOW_SHARE`` of the ICL score's whole
  improvement (its value at step 0 minus its lowest value), an induction head has formed by the window's end
  (score >= ``MIN_INDUCTION``), and the control — the 1-layer run over the same window — improves by at most
  ``MAX_CONTROL_RATIO`` of the 2-layer run's improvement there.
* ``icl-no-phase-change-one-layer``: the 1-layer run never has an induction score above
  ``MAX_ONE_LAYER_INDUCTION`` at any probe, and its steepest factor-4 window of ICL improvement is at most
  ``MAX_CONTROL_RATIO`` of the 2-layer run's steepest (the control: the 2-layer run, which does have one).

Thresholds, fixed before any curve was recorded (commit "ICL phase change: ..."): half the improvement within a
quarter of log-time is "abrupt"; half the other model's change is "does not"; 0.4 and 0.1 are the induction
margins of ``reproduce.induction`` (40% of attention on the induction diagonal; a quarter of that).

History: the claims first read the bundled curriculum organisms.  Their curves (recorded with the thresholds
above already committed) showed the ICL score on natural text rising from 0 to +1.6 nats during the synthetic
phase while the induction head formed, then falling once natural text entered at step 1000; the natural-text runs
were started then, with the same recipe, probes and thresholds, before any of their curves existed.  Those natural
runs, 6000 steps long, formed no induction head (best score 0.032, its rise just begun), so they could not test the
claims; ``natural_recipe`` was then lengthened to 20000 steps (82 M tokens) with the thresholds unchanged, and the
20000-step runs replaced them as the bundled natural curves.
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
NATURAL = ("attn-only-1l-natural", "attn-only-2l-natural")   # the runs the verdicts read
CURRICULUM = ("attn-only-1l", "attn-only-2l")                 # the bundled organisms, reported beside


def run_card(name: str) -> dict:
    """The card of a training run bundled for its probe curves: ``zoo/organisms/<name>.curves.json``."""
    import json

    from mechscope.zoo.registry import bundle_dir

    path = bundle_dir() / f"{name.replace('-', '_')}.curves.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the ICL claims read the bundled training curves "
                                f"{', '.join(NATURAL + CURRICULUM)}")
    return json.loads(path.read_text())


def measure_pair(one_name: str, two_name: str) -> dict:
    """A 1-layer and a 2-layer run's curves (``transformer.icl.curves``) and the windows the claims read."""
    from mechscope.transformer.icl import curves, formation_step, steepest_window, window_bounds, window_change

    one, two = curves(run_card(one_name)["probes"]), curves(run_card(two_name)["probes"])
    if one["step"] != two["step"]:
        raise AssertionError(f"{one_name} and {two_name} were probed at different steps; retrain with one recipe")
    formed = formation_step(two["step"], two["induction"])
    steps = two["step"]
    start, end = window_bounds(steps, formed, factor=WINDOW_FACTOR)
    return {
        "models": [one_name, two_name], "curves": {one_name: one, two_name: two}, "one": one, "two": two,
        "formation_step": formed, "window": [start, end],
        "two_window_change": window_change(steps, two["icl"], formed, factor=WINDOW_FACTOR),
        "one_window_change": window_change(steps, one["icl"], formed, factor=WINDOW_FACTOR),
        "two_whole_improvement": round(two["icl"][0] - min(two["icl"]), 4),
        "two_induction_at_window_end": two["induction"][steps.index(end)],
        "two_steepest": steepest_window(steps, two["icl"], factor=WINDOW_FACTOR),
        "one_steepest": steepest_window(steps, one["icl"], factor=WINDOW_FACTOR),
    }


@lru_cache(maxsize=1)
def measure() -> dict:
    """The verdicts' pair (``NATURAL``) and the bundled organisms' (``CURRICULUM``), reported beside."""
    return {"natural": measure_pair(*NATURAL), "curriculum": measure_pair(*CURRICULUM)}


def _figure(out: Path, m: dict) -> str:
    from mechscope.plots import new_figure, save_figure

    fig, axes = new_figure(1, 2, figsize=(11, 3.8))
    for pair, style in (("natural", "-"), ("curriculum", ":")):
        for name, color in zip(m[pair]["models"], ("tab:gray", "tab:blue")):
            c = m[pair]["curves"][name]
            steps = [max(s, 1) for s in c["step"]]   # step 0 drawn at 1 on the log axis
            axes[0].plot(steps, c["icl"], style, marker=".", color=color, label=name)
            axes[1].plot(steps, c["induction"], style, marker=".", color=color, label=name)
    for ax, title in zip(axes, ("ICL score: loss at tokens 100-127 minus tokens 8-15 (nats)",
                                "best induction score (layer >= 1; 1-layer: layer 0)")):
        ax.axvspan(*m["natural"]["window"], color="tab:orange", alpha=0.15, label="window (natural runs)")
        ax.set_xscale("log")
        ax.set_xlabel("training step (step 0 at 1)")
        ax.set_title(title, fontsize=9)
    axes[1].legend(fontsize=7)
    path = out / "icl_phase_change.png"
    save_figure(fig, path)
    return path.name


def _r(x: float) -> float:
    return round(float(x), 3)


def _window_numbers(p: dict) -> dict:
    """A pair's phase-change numbers (``measure_pair``)."""
    whole, inside, control = p["two_whole_improvement"], p["two_window_change"], p["one_window_change"]
    share = -inside / whole if whole > 0 else 0.0
    ratio = control / inside if inside < 0 else None
    return {"induction_half_formed_at_step": p["formation_step"], "window_steps": p["window"],
            "icl_change_in_window_2l": _r(inside), "icl_whole_improvement_2l": _r(whole),
            "share_of_improvement_in_window": _r(share),
            "induction_at_window_end_2l": _r(p["two_induction_at_window_end"]),
            "icl_start_final_min_2l": [_r(p["two"]["icl"][0]), _r(p["two"]["icl"][-1]), _r(min(p["two"]["icl"]))],
            "control_icl_change_in_window_1l": _r(control),
            "control_ratio_1l_to_2l": None if ratio is None else _r(ratio),
            "steepest_window_2l": p["two_steepest"]}


def _phase_change(out: Path) -> Result:
    m = measure()
    n = _window_numbers(m["natural"])
    ratio = n["control_ratio_1l_to_2l"]
    passed = (n["share_of_improvement_in_window"] >= MIN_WINDOW_SHARE
              and n["induction_at_window_end_2l"] >= MIN_INDUCTION
              and ratio is not None and ratio <= MAX_CONTROL_RATIO)
    numbers = {"runs": m["natural"]["models"], **n, "curriculum_organisms": _window_numbers(m["curriculum"])}
    best = max(m["natural"]["two"]["induction"])
    formed = (f"induction half-formed at step {n['induction_half_formed_at_step']}" if best >= MIN_INDUCTION else
              f"no induction head formed (best {fmt(_r(best))})")
    numbers["best_induction_any_step_2l"] = _r(best)
    summary = (f"natural-text runs: {formed}; steps {n['window_steps'][0]}–{n['window_steps'][1]} hold "
               f"{fmt(n['share_of_improvement_in_window'])} of the 2-layer ICL gain "
               f"({fmt(n['icl_change_in_window_2l'])} of {fmt(-n['icl_whole_improvement_2l'])} nats); "
               f"1-layer there {fmt(n['control_icl_change_in_window_1l'])}")
    return Result(numbers, passed, [_figure(out, m)],
                  controls={"icl_change_in_window_1l": n["control_icl_change_in_window_1l"]}, summary=summary,
                  note="ICL score: mean loss at tokens 100-127 minus tokens 8-15 of 256 held-out rows of natural "
                  "text (transformer.icl), at the probes recorded while training. The verdict reads the "
                  "attn-only-{1,2}l-natural runs (natural text from step 0); curriculum_organisms are the bundled "
                  "attn-only organisms, whose first 1000 steps see only repeated random spans: natural-text loss "
                  "rises then, so their ICL score measures that switch of distribution as much as the heads.")


def _one_layer(out: Path) -> Result:
    m = measure()
    results = {}
    for pair in ("natural", "curriculum"):
        p = m[pair]
        steep_one, steep_two = p["one_steepest"]["change"], p["two_steepest"]["change"]
        results[pair] = {"run": p["models"][0], "best_induction_any_step_1l": _r(max(p["one"]["induction"])),
                         "steepest_window_1l": p["one_steepest"], "control_steepest_window_2l": p["two_steepest"],
                         "ratio_steepest_1l_to_2l": _r(steep_one / steep_two) if steep_two < 0 else None,
                         "icl_start_final_min_1l": [_r(p["one"]["icl"][0]), _r(p["one"]["icl"][-1]),
                                                    _r(min(p["one"]["icl"]))]}
    n = results["natural"]
    passed = (n["best_induction_any_step_1l"] <= MAX_ONE_LAYER_INDUCTION and n["ratio_steepest_1l_to_2l"] is not None
              and n["ratio_steepest_1l_to_2l"] <= MAX_CONTROL_RATIO)
    numbers = {**n, "curriculum_organisms": results["curriculum"]}
    summary = (f"1-layer natural-text run: best induction {fmt(n['best_induction_any_step_1l'])}; steepest ICL drop "
               f"{fmt(n['steepest_window_1l']['change'])} nats (steps {n['steepest_window_1l']['start']}–"
               f"{n['steepest_window_1l']['end']}) vs the 2-layer run's {fmt(n['control_steepest_window_2l']['change'])}")
    return Result(numbers, passed, [], controls={"steepest_window_2l": n["control_steepest_window_2l"]},
                  summary=summary, note="Windows span a factor of 4 in steps ([s / 2, 2 s] over the probe steps); "
                  "curriculum_organisms: the same numbers for the bundled attn-only organisms.")


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
