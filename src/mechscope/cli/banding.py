"""``banding`` (weight banding per conv against the untrained net) and ``train banding`` (the banding
organisms' recipe).  Parse, one library call, print."""

from __future__ import annotations

from pathlib import Path

import typer


def banding_command(
    model: str = typer.Argument(..., help="A zoo model name (e.g. banding-gap, shapes)."),
    layers: list[str] = typer.Argument(None, metavar="[LAYERS]...",
                                       help="Conv module paths or layers (conv4, mixed4b); default: every conv "
                                            "with kernels larger than 1x1."),
    threshold: float = typer.Option(0.5, help="A kernel is banded when |horizontal - vertical share| >= this."),
    weights: str = typer.Option("bundled", help="bundled | random | download | a path to a weights file."),
    seed: int = typer.Option(0, help="Seed of the untrained control (and of --weights random)."),
    out: Path = typer.Option(Path("out/analyses"), help="Output folder."),
) -> None:
    """Share of each conv's kernels banded (horizontal / vertical) against the same model untrained:
    OUT/<model>_banding.png + .json."""
    from mechscope.units import file_stem
    from mechscope.vision.circuits.banding import write_banding_report
    from mechscope.zoo.registry import get_card, load

    name = get_card(model).name
    record = write_banding_report(load(name, weights=weights, seed=seed, device="cpu"),
                                  load(name, weights="random", seed=seed, device="cpu"), out, file_stem(name),
                                  layers or None, threshold)
    for conv, row in record["convs"].items():
        base, gap = record["untrained_convs"][conv], record["excess"][conv]
        typer.echo(f"{conv} ({row['kernel']}): banded {row['banded']:.2f} (horizontal {row['horizontal']:.2f}, "
                   f"vertical {row['vertical']:.2f}); untrained {base['banded']:.2f}; excess {gap['banded']:+.2f}")
    typer.echo("wrote " + " and ".join(record["files"]))


def train_banding_command(
    variant: str = typer.Argument(..., help="gap | gap-rotated | avg-x | max."),
    out: Path = typer.Option(Path("out/train/banding"), help="Folder for the checkpoint, weights and card."),
    steps: int = typer.Option(None, help="Training steps (default: the recipe's)."),
    seed: int = typer.Option(0, help="Seed of the world and the initialisation."),
    threads: int = typer.Option(None, help="torch CPU threads (default: the recipe's)."),
    eval_items: int = typer.Option(None, help="Held-out images for the accuracies (default: the recipe's)."),
) -> None:
    """Train a banding organism on the layout world: OUT/banding_<variant>.safetensors + .json (held-out
    accuracy, train time).  Rerunning with the same settings resumes from its checkpoint."""
    from dataclasses import replace

    from mechscope.zoo.organisms.banding_recipe import BandingRecipe, train_banding

    changes = {k: v for k, v in (("steps", steps), ("threads", threads), ("eval_items", eval_items)) if v}
    card = train_banding(out, variant, replace(BandingRecipe(seed=seed), **changes))
    typer.echo("held-out accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in card["accuracy"].items()))
    typer.echo(f"trained in {card['train_seconds_this_session']} s; sha256 {card['sha256']}; wrote {out}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add ``banding`` and ``train banding``."""
    app.command("banding")(banding_command)
    train_app.command("banding")(train_banding_command)
