"""Claims: the phase diagrams of *Toy Models of Superposition* (Elhage et al. 2022), the learned diagram checked
against the numerically optimal one (``superposition.phase``: the exact expected loss minimised from many starts),
not against a restricted analytic comparison.

Criteria (fixed before the results were looked at; thresholds live here, one constant each):

* ``tms-phase-boundary`` (n=2, m=1; 9 x 9 grid of relative importance 0.1-10 x density 0.01-1, best of 10 seeds,
  10,000 steps):

  1. the learned diagram names the optimal diagram's phase on >= ``MIN_AGREEMENT`` = 85 % of the 81 cells (at
     equal importance "feature 1 only" and "feature 2 only" count as one phase: which of two interchangeable
     features is kept is a coin toss).  85 % allows a band of one cell either side of a boundary (the grid is
     coarse and near a boundary the two solutions' losses are within the seeds' noise) and no more;
  2. the control: the same agreement with the learned map's cells shuffled over the grid (same phases, same
     proportions, no place; 1000 shuffles) — the learned agreement must exceed the shuffles' 95th percentile;
  3. the learned equal-importance transition (13 densities 0.30-0.90) is clean and its midpoint lies within
     ``MAX_SHIFT`` = 0.05 (one step of the sweep) of the optimal transition's midpoint on the same sweep.

  Reported beside them, not part of the verdict: the analytic 4/7 and the paper's restricted comparison
  (``[1, 0]`` with the best bias against ``[1, -1]`` without bias, ``phase.restricted_2_1``) and its agreement
  with the optimal map.  Its assumptions hold where the optimum is one of those three solutions: far from the
  equal-importance boundary; near it the optimum is a shrinking, then asymmetric pair with a bias, which the
  restricted comparison cannot represent.

  History: until issue 16 the criterion was "a clean transition whose midpoint lies in [0.45, 0.70]" around the
  analytic 4/7.  That reference compares restricted solutions (the pair without bias), so it is not the optimum
  the training should find; the criterion now compares against the numerically optimal diagram with a control.

* ``tms-phase-diagram-3-2`` (n=3, m=2, the paper's second diagram: features 1 and 2 at importance 1, the extra
  feature's importance 0.1-10 x one density for all three 0.01-1, 8 x 8 cells, the extra feature's phase): the
  learned diagram (best of 2 seeds, 10,000 steps) names the optimal phase on >= ``MIN_AGREEMENT`` of the 64 cells
  and beats the shuffled control's 95th percentile, as above.  (Seeds: 4 were planned; measured at 4 and 2 seeds
  the agreement was 58 and 56 of 64 cells; 2 keep the two phase claims within their time budget.)
"""

from __future__ import annotations

from pathlib import Path

from mechscope.reproduce.claims import Claim, Result, fmt

PAPER = "Toy Models of Superposition (Elhage et al., 2022)"
#: Share of grid cells where learned and optimal phases must agree (a one-cell band at each boundary, no more).
MIN_AGREEMENT = 0.85
#: Largest allowed distance between the learned and optimal equal-importance transitions (one sweep step).
MAX_SHIFT = 0.05


def _result(name: str):
    from mechscope.reproduce.superposition import _run

    return _run(name)


def _figure(result, out: Path) -> list[str]:
    from mechscope.reproduce.superposition import _figure as save

    return save(result, "phase_diagram", out)


def boundary_verdict(agreement: dict, boundary: dict) -> bool:
    """The n=2/m=1 verdict from the experiment's ``summary`` parts (see the module docstring)."""
    mid, opt = boundary["midpoint"], boundary["optimal"]["midpoint"]
    return (agreement["learned_vs_optimal"] >= MIN_AGREEMENT
            and agreement["learned_vs_optimal"] > agreement["control_shuffled_p95"]
            and bool(boundary["clean"]) and mid is not None and opt is not None and abs(mid - opt) <= MAX_SHIFT)


def diagram_verdict(agreement: dict) -> bool:
    """The n=3/m=2 verdict: agreement >= ``MIN_AGREEMENT`` and above the shuffled control's 95th percentile."""
    return (agreement["learned_vs_optimal"] >= MIN_AGREEMENT
            and agreement["learned_vs_optimal"] > agreement["control_shuffled_p95"])


def check_boundary(out: Path, result=None) -> Result:
    """``tms-phase-boundary``; ``result``: a ``phase`` ExperimentResult (default: the cached full run)."""
    r = result if result is not None else _result("phase")
    a, b = r.summary["agreement"], r.summary["boundary"]
    mid, opt = b["midpoint"], b["optimal"]["midpoint"]
    numbers = {"agreement_learned_vs_optimal": a["learned_vs_optimal"],
               "control_shuffled_mean": a["control_shuffled_mean"], "control_shuffled_p95": a["control_shuffled_p95"],
               "cells": a["cells"], "restricted_analytic_vs_optimal": a["restricted_vs_optimal"],
               "learned_transition": {k: b[k] for k in ("highest_density_in_superposition", "lowest_density_without",
                                                        "midpoint", "clean")},
               "optimal_transition": b["optimal"], "restricted_transition": b["restricted"],
               "analytic": b["analytic"],
               "shift_learned_minus_optimal": round(mid - opt, 4) if mid is not None and opt is not None else None,
               "optimal_W_at_sweep": {str(x["density"]): x["optimal_W"] for x in r.instances[a["cells"]:]}}
    controls = {"control_shuffled_mean": a["control_shuffled_mean"], "control_shuffled_p95": a["control_shuffled_p95"],
                "restricted_transition": b["restricted"], "analytic": b["analytic"]}
    summary = (f"learned = optimal on {a['learned_vs_optimal']:.0%} of {a['cells']} cells (shuffled p95 "
               f"{a['control_shuffled_p95']:.0%}); transition {fmt(mid)} vs optimal {fmt(opt)}, restricted analytic "
               f"{fmt(b['restricted'].get('midpoint'))}")
    return Result(numbers, boundary_verdict(a, b), _figure(r, out),
                  "n=2, m=1: learned (best of 10 seeds) vs the exact expected loss minimised numerically (free W and "
                  "b, many starts); the analytic 4/7 compares [1, 0] with a bias against [1, -1] without one and "
                  "holds only where the optimum is one of those. Control: the learned map shuffled over the grid.",
                  controls=controls, summary=summary)


def check_3_2(out: Path, result=None) -> Result:
    """``tms-phase-diagram-3-2``; ``result``: a ``phase_3_2`` ExperimentResult (default: the cached full run)."""
    r = result if result is not None else _result("phase_3_2")
    a = r.summary["agreement"]
    counts: dict[str, dict[str, int]] = {"learned": {}, "optimal": {}}
    for x in r.instances:
        counts["learned"][x["phase"]] = counts["learned"].get(x["phase"], 0) + 1
        counts["optimal"][x["optimal_phase"]] = counts["optimal"].get(x["optimal_phase"], 0) + 1
    numbers = {"agreement_learned_vs_optimal": a["learned_vs_optimal"],
               "control_shuffled_mean": a["control_shuffled_mean"], "control_shuffled_p95": a["control_shuffled_p95"],
               "cells": a["cells"], "phase_counts": counts,
               "disagreeing_cells": [{k: x[k] for k in ("relative_importance", "density", "phase", "optimal_phase")}
                                     for x in r.instances if x["phase"] != x["optimal_phase"]]}
    controls = {"control_shuffled_mean": a["control_shuffled_mean"], "control_shuffled_p95": a["control_shuffled_p95"]}
    summary = (f"learned = optimal on {a['learned_vs_optimal']:.0%} of {a['cells']} cells vs shuffled mean "
               f"{a['control_shuffled_mean']:.0%}, p95 {a['control_shuffled_p95']:.0%}")
    return Result(numbers, diagram_verdict(a), _figure(r, out), controls=controls, summary=summary, note=
                  "n=3, m=2: the extra feature's phase (norm <= 0.5: not represented; interference > 0.1: "
                  "superposition; else a dedicated dimension), learned (best of 2 seeds) vs numerically optimal. "
                  "Control: the learned map shuffled over the grid.")


PHASE_BOUNDARY = Claim("tms-phase-boundary", PAPER, "the learned n=2/m=1 phase diagram matches the numerically "
                       "optimal one, and so does its equal-importance transition",
                       f"learned = optimal phase on >= {MIN_AGREEMENT:.0%} of 81 cells and above the shuffled "
                       f"control's 95th percentile; learned transition clean and within {MAX_SHIFT} of the optimal",
                       check_boundary)
PHASE_3_2 = Claim("tms-phase-diagram-3-2", PAPER, "the learned n=3/m=2 phase diagram of the extra feature matches "
                  "the numerically optimal one",
                  f"learned = optimal phase on >= {MIN_AGREEMENT:.0%} of 64 cells and above the shuffled control's "
                  "95th percentile", check_3_2)
CLAIMS = (PHASE_BOUNDARY, PHASE_3_2)
