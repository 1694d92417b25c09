"""The claims framework: each claim of a paper that mechscope checks is a function returning numbers, figures
and pass/fail against a criterion stated in advance; ``run_claims`` runs some or all and writes a report.

A claim module defines ``CLAIM = Claim(...)``; ``CLAIMS`` lists them (one table, no if/elif).  A failed claim
is a result and is reported as such.

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


@dataclass
class Result:
    """What a claim's check measured: ``numbers`` (JSON-able), ``passed``, ``figures`` (paths relative to the
    report folder) and a ``note`` (what the numbers mean, what was not checked)."""

    numbers: dict
    passed: bool
    figures: list[str] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class Claim:
    """A claim: its ``name``, the ``paper`` it comes from, the ``statement``, the numeric ``criterion`` and the
    ``check(out_dir) -> Result`` that measures it."""

    name: str
    paper: str
    statement: str
    criterion: str
    check: Callable[[Path], Result]


def run_claims(claims: Sequence[Claim], out: str | os.PathLike, *, progress: bool = True) -> list[dict]:
    """Run ``claims``; write ``out/results.json`` and ``out/report.md`` (atomically); return the rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for claim in claims:
        if progress:
            print(f"claim {claim.name}: {claim.statement}", flush=True)
        start = time.perf_counter()
        result = claim.check(out)
        rows.append({"name": claim.name, "paper": claim.paper, "statement": claim.statement,
                     "criterion": claim.criterion, "passed": bool(result.passed), "numbers": result.numbers,
                     "figures": result.figures, "note": result.note,
                     "seconds": round(time.perf_counter() - start, 1)})
        if progress:
            print(f"  {'PASS' if result.passed else 'FAIL'} in {rows[-1]['seconds']} s: {result.numbers}", flush=True)
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
        lines += [""] + [f"![{f}]({f})" for f in r["figures"]]
        if r["note"]:
            lines += ["", r["note"]]
        lines += ["", f"({r['seconds']} s)", ""]
    return "\n".join(lines)
