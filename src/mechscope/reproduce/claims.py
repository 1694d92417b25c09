"""The claims framework: each claim of a paper that mechscope checks is a function returning numbers, figures
and pass/fail against a criterion stated in advance; ``run_claims`` runs some or all and writes a report.

A claim module defines ``CLAIM = Claim(...)``; ``CLAIMS`` lists them (one table, no if/elif).  A failed claim
is a result and is reported as such.

``run_claims`` writes three files: ``report.json`` (the machine, the date, the total time and per claim its
name, area, paper, statement, criterion, verdict, numbers, control numbers, summary, figures, note and seconds;
``mechscope.reproduce.readme`` renders the README's claim tables from it), ``report.md`` (the same for a reader)
and ``results.json`` (the per-claim rows alone, kept for scripts that read it).

A claim names its control's numbers with ``Result.controls``; left ``None``, they are the numbers whose key (at
any depth) mentions one of ``CONTROL_WORDS`` (untrained, random, shuffled, control, baseline), see
``control_numbers``.  ``Result.summary`` is the claim's one-line result for the README; left empty, it is made
from the top-level scalar numbers (``summary_line``).  A claim's area (vision / transformer / superposition) is
``Claim.area`` or, left empty, follows from the module its check lives in (``claim_area``).

Example::

    >>> from mechscope.reproduce.claims import Claim, Result, run_claims
    >>> import tempfile
    >>> demo = Claim("two-plus-two", "arithmetic", "2 + 2 is 4", "the sum equals 4",
    ...              lambda out: Result(numbers={"sum": 2 + 2}, passed=2 + 2 == 4))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     rows = run_claims([demo], d, progress=False)
    >>> rows[0]["passed"], rows[0]["numbers"]
    (True, {'sum': 4})
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mechscope.artefacts import atomic_write_bytes, atomic_write_json
from mechscope.devices import machine_info
from mechscope.errors import MechscopeError


@dataclass
class Result:
    """What a claim's check measured: ``numbers`` (JSON-able), ``passed``, ``figures`` (paths relative to the
    report folder), a ``note`` (what the numbers mean, what was not checked), optionally ``controls`` (the
    control's numbers; ``None``: picked from ``numbers`` by ``control_numbers``) and a one-line ``summary`` for
    the README (empty: ``summary_line(numbers)``)."""

    numbers: dict
    passed: bool
    figures: list[str] = field(default_factory=list)
    note: str = ""
    controls: dict | None = None
    summary: str = ""


@dataclass(frozen=True)
class Claim:
    """A claim: its ``name``, the ``paper`` it comes from, the ``statement``, the numeric ``criterion`` and the
    ``check(out_dir) -> Result`` that measures it; ``area`` (one of ``AREAS``; empty: ``claim_area``)."""

    name: str
    paper: str
    statement: str
    criterion: str
    check: Callable[[Path], Result]
    area: str = ""


AREAS = ("vision", "multimodal", "transformer", "superposition")
# The claim modules outside vision; any other module's claims are vision claims unless ``Claim.area`` says otherwise.
CONTROL_WORDS = ("untrained", "random", "shuffled", "control", "baseline")
_SUMMARY_ITEMS = 5
_LIST_ITEMS = 5


def claim_area(claim: Claim) -> str:
    """The claim's area: ``claim.area`` (the registry sets it for every claim it lists), else ``"vision"``.

    >>> claim_area(Claim("c", "p", "s", "k", lambda out: None, area="transformer"))
    'transformer'
    """
    if claim.area:
        if claim.area not in AREAS:
            raise MechscopeError(f"claim {claim.name!r}: area {claim.area!r} is not one of {', '.join(AREAS)}")
        return claim.area
    return "vision"


def control_numbers(numbers: dict) -> dict:
    """The numbers of a claim's control: every entry whose key mentions a word of ``CONTROL_WORDS`` (whole, with
    what it holds), looked for at any depth; nested hits keep their path (``"family.untrained_share"``).

    >>> control_numbers({"trained": 0.9, "untrained": 0.1, "family": {"n": 3, "random_share": 0.2}})
    {'untrained': 0.1, 'family.random_share': 0.2}
    """
    out: dict = {}

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            if any(w in str(k).lower() for w in CONTROL_WORDS):
                out[prefix + str(k)] = v
            elif isinstance(v, dict):
                walk(v, f"{prefix}{k}.")

    walk(numbers, "")
    return out


def _short(v) -> str | None:
    """A scalar or a short list of scalars as text (floats to 3 significant digits); ``None`` for anything else."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, int) or (isinstance(v, str) and len(v) <= 24):
        return str(v)
    if isinstance(v, list) and 0 < len(v) <= _LIST_ITEMS and not any(isinstance(x, (list, dict)) for x in v):
        parts = [_short(x) for x in v]
        return None if None in parts else "[" + ", ".join(parts) + "]"
    return None


def summary_line(numbers: dict, items: int = _SUMMARY_ITEMS) -> str:
    """One short line from the top-level numbers that are scalars or short lists (bools, ints, floats to 3
    significant digits, short strings, lists of at most 5 of them), at most ``items`` of them.

    >>> summary_line({"score": 0.91234, "layer": "mixed3b", "per_unit": {"a": 1}, "ok": True, "norms": [1.0, 0.004]})
    'score 0.912, layer mixed3b, ok true, norms [1, 0.004]'
    """
    parts = [f"{k} {t}" for k, t in ((k, _short(v)) for k, v in numbers.items()) if t is not None]
    return ", ".join(parts[:items])


def fmt(v, digits: int = 3) -> str:
    """A measured number for a summary line: floats to ``digits`` significant digits, ``None`` as "none".

    >>> fmt(0.91234), fmt(None), fmt(12)
    ('0.912', 'none', '12')
    """
    if v is None:
        return "none"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def run_claims(claims: Sequence[Claim], out: str | os.PathLike, *, progress: bool = True) -> list[dict]:
    """Run ``claims``; write ``out/report.json``, ``out/report.md`` and ``out/results.json`` (atomically); return
    the rows (one per claim, as in ``report.json``'s ``claims``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    areas = [claim_area(c) for c in claims]         # a bad area fails before any work
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    total = time.perf_counter()
    rows = []
    for claim, area in zip(claims, areas):
        if progress:
            print(f"claim {claim.name}: {claim.statement}", flush=True)
        start = time.perf_counter()
        result = claim.check(out)
        controls = control_numbers(result.numbers) if result.controls is None else result.controls
        rows.append({"name": claim.name, "area": area, "paper": claim.paper, "statement": claim.statement,
                     "criterion": claim.criterion, "verdict": "pass" if result.passed else "fail",
                     "passed": bool(result.passed), "numbers": result.numbers, "controls": controls,
                     "summary": result.summary or summary_line(result.numbers), "figures": result.figures,
                     "note": result.note, "seconds": round(time.perf_counter() - start, 1)})
        if progress:
            print(f"  {'PASS' if result.passed else 'FAIL'} in {rows[-1]['seconds']} s: {result.numbers}", flush=True)
    report = {"machine": machine_info(), "date": date, "seconds": round(time.perf_counter() - total, 1),
              "passed": sum(r["passed"] for r in rows), "total": len(rows), "claims": rows}
    atomic_write_json(out / "report.json", report)
    atomic_write_json(out / "results.json", rows)
    atomic_write_bytes(out / "report.md", _markdown(rows).encode())
    return rows


def _markdown(rows: list[dict]) -> str:
    passed = sum(r["passed"] for r in rows)
    lines = ["# mechscope reproduce", "", f"{passed} of {len(rows)} claims pass.", ""]
    for r in rows:
        lines += [f"## {r['name']} — {'PASS' if r['passed'] else 'FAIL'}", "",
                  f"*{r['paper']}*: {r['statement']}", "", f"Criterion: {r['criterion']}", "", "| number | value |",
                  "|---|---|"]
        lines += [f"| {k} | {json.dumps(v)} |" for k, v in r["numbers"].items()]
        lines += ["", "Control: " + (", ".join(f"{k} = {json.dumps(v)}" for k, v in r["controls"].items())
                                     or "none named (no number's key mentions one, and the claim sets no controls)")]
        lines += [""] + [f"![{f}]({f})" for f in r["figures"]]
        if r["note"]:
            lines += ["", r["note"]]
        lines += ["", f"({r['seconds']} s)", ""]
    return "\n".join(lines)
