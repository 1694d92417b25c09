"""The model verbs: ``models`` (the zoo), ``layers`` (a model's layers or hook points), ``vis`` (feature
visualizations of units)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the models of the zoo."""
    from mechscope.zoo.listing import model_rows

    rows = model_rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['name']:<14} {'x'.join(map(str, r['input'])):<11} weights: {', '.join(r['weights']):<26} {r['description']}")


def layers(
    model: str = typer.Argument(..., help="A zoo model name, e.g. inceptionv1."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List a model's layers: name, channels, spatial size at the default input, pre-ReLU / branch flags."""
    from mechscope.zoo.listing import layer_rows

    listing = layer_rows(model)
    if as_json:
        typer.echo(json.dumps(listing.rows, indent=2))
        return
    if listing.kind == "tokens":   # a language model: its hook points
        typer.echo(f"{'hook point':<36} shape (without batch; {listing.positions} positions)")
        for h in listing.rows:
            typer.echo(f"{h['name']:<36} {'x'.join(map(str, h['shape']))}")
        return
    typer.echo(f"{'layer':<32} {'channels':>8}  {'spatial':<9} flags")
    for r in listing.rows:
        flags = " ".join(f for f, on in (("pre_relu", r["pre_relu"]), ("branch", r["branch"])) if on)
        typer.echo(f"{r['name']:<32} {r['channels']:>8}  {'x'.join(map(str, r['spatial'])) or '-':<9} {flags}")


def vis(
    model: str = typer.Argument(..., help="A zoo model name, e.g. inceptionv1."),
    units: list[str] = typer.Argument(..., help="Units to visualize, e.g. mixed3b:379 mixed4a:476@7,7."),
    weights: str = typer.Option("bundled", help="bundled | random | download | a path to a weights file."),
    steps: int = typer.Option(512, help="Optimization steps (Adam, lr 0.05)."),
    size: int = typer.Option(128, help="Image size in pixels."),
    seed: int = typer.Option(0, help="Seed for the images and transforms (and random weights)."),
    diversity: int = typer.Option(1, help="Images per unit, pushed apart by the diversity penalty."),
    negative: bool = typer.Option(False, "--negative", help="Also render images that minimize each unit."),
    out: Path = typer.Option(Path("out/vis"), help="Output folder."),
    device: str = typer.Option(None, help="cpu, cuda, cuda:1, ... (default: CUDA when available)."),
) -> None:
    """Feature visualizations of UNITS, optimized together in one batch: OUT/<unit>.png and OUT/<unit>.json."""
    from mechscope.vision.featvis.render import render_units
    from mechscope.zoo.registry import load

    net = load(model, weights=weights, seed=seed, device=device)
    result = render_units(net, units, size=size, steps=steps, seed=seed, diversity=diversity, negative=negative)
    result.settings.update(model=model, weights=weights)
    written = result.save_dir(out)
    for label, act in zip(result.labels, result.activations, strict=True):
        typer.echo(f"{label:<32} final activation {act:.4f}")
    typer.echo(f"wrote {len(written)} files to {out}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add the verbs of this module to the ``mechscope`` app."""
    app.command("models")(models)
    app.command("layers")(layers)
    app.command("vis")(vis)
