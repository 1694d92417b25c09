"""Universality across architectures: ``universality A:LAYER B:LAYER`` (detector families of two zoo models
compared against B untrained) and ``train shapes-arch ARCH`` (the shapes world learned by a VGG-style stack or a
small ResNet).  Parses, calls ``mechscope.vision.families.architectures`` or the shapes recipe, prints."""

from __future__ import annotations

from pathlib import Path

import typer

from mechscope.errors import MechscopeError


def _model_layer(spec: str) -> tuple[str, str]:
    model, _, layer = spec.partition(":")
    if not model or not layer:
        raise MechscopeError(f"expected MODEL:LAYER (e.g. shapes-vgg:conv3_2), got {spec!r}")
    return model, layer


def universality_command(
    a: str = typer.Argument(..., metavar="A:LAYER", help="A zoo model and layer, e.g. shapes:mixed3b."),
    b: str = typer.Argument(..., metavar="B:LAYER", help="Another zoo model and layer, e.g. shapes-vgg:conv3_2."),
    orientations: int = typer.Option(72, help="Orientations over 360 degrees for the tuning curves."),
    min_corr: float = typer.Option(0.8, help="Tuning correlation for a curve detector of A to count as matched."),
    max_diff: float = typer.Option(22.5, help="Largest difference of preferred orientations (degrees) of a match."),
    out: Path = typer.Option(Path("out/universality"), help="Output folder."),
) -> None:
    """Curve and high-low detector censuses of A and B at their layers, and A's curve detectors matched by tuning
    curve into B and into B untrained (seed-0 random weights): JSON + PNG."""
    from mechscope.vision.families.architectures import compare_architectures
    from mechscope.zoo.registry import get_card, load

    (name_a, layer_a), (name_b, layer_b) = _model_layer(a), _model_layer(b)
    name_a, name_b = get_card(name_a).name, get_card(name_b).name
    result = compare_architectures(load(name_a, device="cpu"), layer_a, load(name_b, device="cpu"), layer_b,
                                   load(name_b, weights="random", seed=0, device="cpu"), n_orientations=orientations,
                                   min_corr=min_corr, max_diff=max_diff)
    written = result.save(out, (name_a, name_b))
    for label, c in ((a, result.a), (b, result.b), (f"{b} untrained", result.control)):
        typer.echo(f"{label}: {c['curve_detectors']}/{c['units']} curve detectors covering "
                   f"{c['curve_coverage_of_8']}/8 sectors, {c.get('high_low_detectors', 0)} high-low detectors")
    typer.echo(f"{a} curve detectors matched in {name_b}: {result.match.share:.0%}; in untrained {name_b}: "
               f"{result.match_control.share:.0%}")
    typer.echo("wrote " + ", ".join(str(p) for p in written))


def train_shapes_arch_command(
    arch: str = typer.Argument(..., help="vgg | resnet (inception is `train shapes`)."),
    out: Path = typer.Option(None, help="Folder for the checkpoint, weights and card (default out/train/shapes-ARCH)."),
    steps: int = typer.Option(None, help="Training steps (default: the recipe's)."),
    batch_size: int = typer.Option(None, help="Images per step (default: the recipe's)."),
    seed: int = typer.Option(0, help="Seed of the world and the initialisation."),
    threads: int = typer.Option(None, help="torch CPU threads (default: the recipe's)."),
    eval_items: int = typer.Option(None, help="Held-out images for the accuracies (default: the recipe's)."),
) -> None:
    """Train the shapes world on another architecture: OUT/shapes_ARCH.safetensors + OUT/shapes_ARCH.json.
    Rerunning with the same settings resumes from OUT/checkpoint.pt."""
    from dataclasses import replace

    from mechscope.zoo.organisms.shapes_recipe import ARCHITECTURES, architecture_recipe, train_shapes

    recipe = architecture_recipe(arch, seed)
    recipe = replace(recipe, **{k: v for k, v in (("steps", steps), ("batch_size", batch_size), ("threads", threads),
                                                  ("eval_items", eval_items)) if v})
    out = out or Path(f"out/train/shapes-{arch}")
    card = train_shapes(out, recipe)
    typer.echo("held-out accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in card["accuracy"].items()))
    typer.echo(f"wrote {out / ARCHITECTURES[arch].weights_file} (sha256 {card['sha256']}) and "
               f"{out / ARCHITECTURES[arch].card_file}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add ``universality`` and ``train shapes-arch``."""
    app.command("universality")(universality_command)
    train_app.command("shapes-arch")(train_shapes_arch_command)
