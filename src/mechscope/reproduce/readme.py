"""The README's claim tables, generated from a ``report.json`` (``run_claims``), one table per area.

README.md holds each table between marker comments, ``<!-- reproduce:vision -->`` … ``<!-- /reproduce:vision -->``
(likewise ``transformer``, ``superposition``); ``write_readme`` rewrites what lies between them, ``readme_diff``
names the areas whose text differs from the rendering.  A table row: the claim, its paper, its verdict, its
measured numbers in one line (the claim's ``summary``) and its time.

Example::

    >>> report = {"claims": [{"name": "two-plus-two", "area": "vision", "paper": "arithmetic", "passed": True,
    ...                       "summary": "sum 4", "seconds": 0.0}]}
    >>> print(render_area(report, "vision"), end="")
    1 of 1 claims pass (0.0 s in all).
    <BLANKLINE>
    | claim | paper | verdict | measured | time |
    |---|---|---|---|---|
    | `two-plus-two` | arithmetic | **pass** | sum 4 | 0.0 s |
    >>> text = "intro\\n<!-- reproduce:vision -->\\nold\\n<!-- /reproduce:vision -->\\nrest"
    >>> update_readme(text, report, areas=("vision",)).splitlines()[2]
    '1 of 1 claims pass (0.0 s in all).'
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from mechscope.artefacts import atomic_write_bytes
from mechscope.errors import MechscopeError
from mechscope.reproduce.claims import AREAS

DEFAULT_REPORT = Path("docs/reproduce/report.json")


def _marker(area: str) -> re.Pattern:
    return re.compile(rf"(<!-- reproduce:{area} -->\n)(.*?)(<!-- /reproduce:{area} -->)", re.S)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_area(report: dict, area: str) -> str:
    """The markdown of ``area``'s claims in ``report``: a count line and a table (claims in report order)."""
    rows = [r for r in report["claims"] if r["area"] == area]
    if not rows:
        return f"No {area} claim in this report.\n"
    seconds = sum(r["seconds"] for r in rows)
    lines = [f"{sum(r['passed'] for r in rows)} of {len(rows)} claims pass ({seconds:.1f} s in all).", "",
             "| claim | paper | verdict | measured | time |", "|---|---|---|---|---|"]
    lines += [f"| `{r['name']}` | {_cell(r['paper'])} | **{'pass' if r['passed'] else 'fail'}** | "
              f"{_cell(r['summary'])} | {r['seconds']:.1f} s |" for r in rows]
    return "\n".join(lines) + "\n"


def update_readme(text: str, report: dict, areas: Sequence[str] = AREAS) -> str:
    """``text`` with each area's marked section replaced by ``render_area``; a missing marker is an error."""
    for area in areas:
        pattern = _marker(area)
        if not pattern.search(text):
            raise MechscopeError(f"the README has no <!-- reproduce:{area} --> ... <!-- /reproduce:{area} --> section")
        body = render_area(report, area)
        text = pattern.sub(lambda m: m.group(1) + body + m.group(3), text, count=1)
    return text


def load_report(path: str | os.PathLike) -> dict:
    """A ``report.json`` as written by ``run_claims``; a missing or foreign file is a ``MechscopeError``."""
    path = Path(path)
    if not path.is_file():
        raise MechscopeError(f"no report at {path}: run `mechscope reproduce all --out {path.parent}` first")
    report = json.loads(path.read_text())
    if not isinstance(report, dict) or "claims" not in report:
        raise MechscopeError(f"{path} is not a report.json of `mechscope reproduce` (no 'claims')")
    return report


def readme_diff(readme: str | os.PathLike, report: str | os.PathLike = DEFAULT_REPORT) -> list[str]:
    """The areas whose section of ``readme`` differs from the rendering of ``report`` (empty: in step)."""
    text, rep = Path(readme).read_text(), load_report(report)
    return [a for a in AREAS if update_readme(text, rep, (a,)) != text]


def write_readme(readme: str | os.PathLike, report: str | os.PathLike = DEFAULT_REPORT) -> list[str]:
    """Rewrite ``readme``'s claim sections from ``report`` in place (atomically); return the areas changed."""
    changed = readme_diff(readme, report)
    if changed:
        text = update_readme(Path(readme).read_text(), load_report(report))
        atomic_write_bytes(readme, text.encode())
    return changed
