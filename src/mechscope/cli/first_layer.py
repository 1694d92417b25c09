"""``first-layer`` (a model's first RGB layer: kernels by branch, colour scores, branch colour split, SVD) and
``train branched`` (the branched organisms' recipe).  Each parses, calls the library
(``vision.families.first_layer_report``, ``zoo.organisms.branched_recipe``) and prints."""

from __future__ import annotations

from pathlib import Path

import typer


def first_layer_command(
    model: str = typer.Argument(..., help="A zoo model name (e.g. branched-2, shapes)."),
    groups: int = typer.Option(None, help="Branches to cut the first layer into (default: the model's own, else 1)."),
    draws: int = typer.Option(1000, help="Random partitions for the permutation control."),
    weights: str = typer.Option("bundled", help="bundled | random | download | a path to a weights file."),
    seed: int = typer.Option(0, help="Seed of random weights."),
    out: Path = typer.Option(Path("out/first_layer"), help="Output folder."),
) -> None:
    """The first layer's kernels grouped by branch with their colour scores, the branch colour split against
    random partitions, and the top SVD components (OUT/first_layer.png, OUT/first_layer.json)."""
    from mechscope.vision.families.first_layer_report import first_layer_report
    from mechscope.zoo.registry import get_card, load

    rep = first_layer_report(load(get_card(model).name, weights=weights, seed=seed, device="cpu"), groups,
                             draws=draws)
    paths = rep.save(out)
    p, svd = rep.payload, rep.payload["svd"]
    typer.echo(f"{p['layer']} {p['shape']}: mean colour score "
               f"{sum(p['unit_colour_scores']) / len(p['unit_colour_scores']):.3f}")
    if p["branches"]:
        b = p["branches"]
        typer.echo(f"{p['groups']} branches: mean colour score " + ", ".join(f"{m:.3f}" for m in b["branch_means"])
                   + f"; split {b['split']:.3f} exceeds {b['percentile_vs_random_partitions']:.1%} of "
                   f"{b['random_partitions']['draws']} random partitions")
    typer.echo("SVD components: " + ", ".join(
        f"#{i + 1} {e:.0%} (colour {c:.2f}, frequency {f:.2f})"
        for i, (e, c, f) in enumerate(zip(svd["explained"], svd["colour"], svd["frequency"]))))
    typer.echo(f"colour first: {svd['colour_first']}, frequency second: {svd['frequency_second']}")
    typer.echo("wrote " + ", ".join(str(x) for x in paths))


def train_branched_command(
    groups: int = typer.Option(..., help="Branches after the first layer: 1 (unbranched), 2 or 3."),
    out: Path = typer.Option(Path("out/train/branched"), help="Folder for the checkpoint, weights and card."),
    steps: int = typer.Option(None, help="Training steps (default: the recipe's)."),
    batch_size: int = typer.Option(None, help="Images per step (default: the recipe's)."),
    seed: int = typer.Option(0, help="Seed of the world and the initialisation."),
    threads: int = typer.Option(None, help="torch CPU threads (default: the recipe's)."),
    eval_items: int = typer.Option(None, help="Held-out images for the accuracies (default: the recipe's)."),
) -> None:
    """Train a branched organism: OUT/branched_N.safetensors + OUT/branched_N.json.  Rerunning with the same
    settings resumes from OUT/checkpoint_N.pt."""
    from dataclasses import replace

    from mechscope.zoo.organisms.branched_recipe import BranchedRecipe, card_file, train_branched, weights_file

    changes = {k: v for k, v in (("steps", steps), ("batch_size", batch_size), ("threads", threads),
                                 ("eval_items", eval_items)) if v}
    recipe = replace(BranchedRecipe(groups=groups, seed=seed), **changes)
    card = train_branched(out, recipe)
    typer.echo("held-out accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in card["accuracy"].items()))
    typer.echo(f"wrote {out / weights_file(groups)} (sha256 {card['sha256']}) and {out / card_file(groups)}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add ``first-layer`` to the app and ``train branched`` to the ``train`` group."""
    app.command("first-layer")(first_layer_command)
    train_app.command("branched")(train_branched_command)
