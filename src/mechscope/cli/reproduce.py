"""``reproduce``: the papers' claims checked on the bundled models."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def reproduce(
    claims: list[str] = typer.Argument(None, help="Claim names, or 'all' (default)."),
    out: Path = typer.Option(Path("out/reproduce"), help="Folder for report.md, results.json and figures."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    list_only: bool = typer.Option(False, "--list", help="List the claims and their criteria, run nothing."),
) -> None:
    """Check the papers' claims on the bundled models: numbers, figures, pass/fail against stated criteria."""
    from mechscope.reproduce.claims import run_claims
    from mechscope.reproduce.registry import get_claims

    chosen = get_claims(list(claims or ["all"]))
    if list_only:
        for c in chosen:
            typer.echo(f"{c.name:<26} {c.statement}\n{'':<26} criterion: {c.criterion}")
        return
    rows = run_claims(chosen, out, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        typer.echo(f"{sum(r['passed'] for r in rows)} of {len(rows)} claims pass; wrote {out / 'report.md'}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add the verbs of this module to the ``mechscope`` app."""
    app.command("reproduce")(reproduce)
