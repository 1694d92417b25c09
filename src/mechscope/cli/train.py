"""``train shapes``: the vision organism's recipe (``train attn-only`` lives with the transformer verbs)."""

from __future__ import annotations

from pathlib import Path

import typer


def train_shapes_command(
    out: Path = typer.Option(Path("out/train/shapes"), help="Folder for the checkpoint, weights and card."),
    steps: int = typer.Option(None, help="Training steps (default: the recipe's)."),
    batch_size: int = typer.Option(None, help="Images per step (default: the recipe's)."),
    seed: int = typer.Option(0, help="Seed of the world and the initialisation."),
    threads: int = typer.Option(None, help="torch CPU threads (default: the recipe's)."),
    tasks: str = typer.Option("shape,curve,boundary,colour", help="Heads to train (an ablation trains fewer)."),
    census_every: int = typer.Option(200, help="Count curve detectors in mixed3a/mixed3b every N steps (0: off)."),
    census_orientations: int = typer.Option(720, help="Orientations of the final census (720 = 0.5 deg steps)."),
    eval_items: int = typer.Option(None, help="Held-out images for the accuracies (default: the recipe's)."),
    device: str = typer.Option(None, help="cpu, cuda or cuda:N (default: the CPU, as the bundled card was "
                                          "trained)."),
) -> None:
    """Train the shapes organism: OUT/shapes.safetensors + OUT/shapes.json (accuracy, curve-detector census).
    Rerunning with the same settings resumes from OUT/checkpoint.pt."""
    from dataclasses import replace

    from mechscope.vision.families.census import train_shapes_with_census
    from mechscope.zoo.organisms.shapes_recipe import CARD_FILE, WEIGHTS_FILE, ShapesRecipe

    from mechscope.devices import checked_device

    if device is not None:
        checked_device(device)   # before any work: a clear error for a wrong or absent device
    recipe = ShapesRecipe(seed=seed, tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()))
    changes = {k: v for k, v in (("steps", steps), ("batch_size", batch_size), ("threads", threads),
                                                  ("eval_items", eval_items)) if v}
    recipe = replace(recipe, **changes)

    def census(step: int, found: dict) -> None:
        typer.echo(f"\nstep {step}: " + ", ".join(
            f"{k} {v['curve_detectors']} curve detectors covering {v['coverage_of_8_sectors']}/8 sectors"
            for k, v in found.items()))

    card = train_shapes_with_census(out, recipe, census_every=census_every, census_orientations=census_orientations,
                                    on_census=census, device=device)
    typer.echo("held-out accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in card["accuracy"].items()))
    for layer, c in card["curve_detector_census"].items():
        typer.echo(f"{layer}: {c['curve_detectors']} of {c['units']} units are curve detectors, covering "
                   f"{c['coverage_of_8_sectors']}/8 sectors of orientation (untrained: "
                   f"{card['curve_detector_census_untrained'][layer]['curve_detectors']})")
    typer.echo(f"wrote {out / WEIGHTS_FILE} (sha256 {card['sha256']}) and {out / CARD_FILE}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add ``train shapes`` to the ``train`` group."""
    train_app.command("shapes")(train_shapes_command)
