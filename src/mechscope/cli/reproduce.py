"""``reproduce``: the papers' claims checked on the bundled models; ``--readme`` / ``--check-readme`` keep the
README's claim tables in step with a committed ``report.json``."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def reproduce(
    claims: list[str] = typer.Argument(None, help="Claim names, or 'all' (default)."),
    out: Path = typer.Option(Path("out/reproduce"), help="Folder for report.json, report.md and figures."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    list_only: bool = typer.Option(False, "--list", help="List the claims and their criteria, run nothing."),
    readme: bool = typer.Option(False, "--readme", help="Rewrite README.md's claim tables from --report, run nothing."),
    check_readme: bool = typer.Option(False, "--check-readme",
                                      help="Exit 1 if README.md's claim tables differ from --report, run nothing."),
    report: Path = typer.Option(Path("docs/reproduce/report.json"), help="The report.json for --readme."),
    readme_file: Path = typer.Option(Path("README.md"), help="The README for --readme / --check-readme."),
) -> None:
    """Check the papers' claims on the bundled models: numbers, figures, pass/fail against stated criteria."""
    from mechscope.reproduce.claims import run_claims
    from mechscope.reproduce.registry import get_claims

    if check_readme:
        from mechscope.reproduce.readme import readme_diff

        differ = readme_diff(readme_file, report)
        if differ:
            typer.echo(f"{readme_file}: the {', '.join(differ)} claim tables differ from {report} "
                       f"(run `mechscope reproduce --readme --report {report}`)", err=True)
            raise typer.Exit(1)
        typer.echo(f"{readme_file}'s claim tables match {report}")
        return
    if readme:
        from mechscope.reproduce.readme import write_readme

        changed = write_readme(readme_file, report)
        typer.echo(f"rewrote the {', '.join(changed)} claim tables of {readme_file}" if changed
                   else f"{readme_file}'s claim tables already match {report}")
        return
    chosen = get_claims(list(claims or ["all"]))
    if list_only:
        for c in chosen:
            typer.echo(f"{c.name:<26} {c.statement}\n{'':<26} criterion: {c.criterion}")
        return
    rows = run_claims(chosen, out, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        typer.echo(f"{sum(r['passed'] for r in rows)} of {len(rows)} claims pass; wrote {out / 'report.json'} "
                   f"and {out / 'report.md'}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add the verbs of this module to the ``mechscope`` app."""
    app.command("reproduce")(reproduce)
