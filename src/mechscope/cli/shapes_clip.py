"""``train shapes-clip``: the image-text organism's recipe (issue 14)."""

from __future__ import annotations

from pathlib import Path

import typer


def train_shapes_clip_command(
    out: Path = typer.Option(Path("out/train/shapes-clip"), help="Folder for the checkpoint, weights, tokenizer, card."),
    steps: int = typer.Option(None, help="Training steps (default: the recipe's)."),
    batch_size: int = typer.Option(None, help="Image-caption pairs per step (default: the recipe's)."),
    seed: int = typer.Option(0, help="Seed of the world and the initialisation."),
    threads: int = typer.Option(None, help="torch CPU threads (default: the recipe's)."),
    eval_items: int = typer.Option(None, help="Held-out images per style for the zero-shot accuracy."),
    shuffle_captions: bool = typer.Option(False, "--shuffle-captions",
                                          help="Train the control shapes-clip-shuffled: each image paired with "
                                               "another item's caption (a fixed permutation within its batch)."),
) -> None:
    """Train shapes-clip: OUT/shapes_clip.safetensors, OUT/shapes_clip.tokenizer.json and OUT/shapes_clip.json
    (zero-shot accuracy per style on held-out seeds); with --shuffle-captions the control, OUT/shapes_clip_shuffled.*.
    Rerunning with the same settings resumes from OUT/checkpoint.pt."""
    from dataclasses import replace

    from mechscope.zoo.organisms.shapes_clip_recipe import ShapesClipRecipe, files, train_shapes_clip

    changes = {k: v for k, v in (("steps", steps), ("batch_size", batch_size), ("threads", threads),
                                 ("eval_items", eval_items)) if v}
    recipe = replace(ShapesClipRecipe(seed=seed, shuffle_captions=shuffle_captions), **changes)
    weights_file, card_file, _ = files(recipe)
    card = train_shapes_clip(out, recipe)
    typer.echo("held-out zero-shot accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in card["zeroshot_accuracy"].items()))
    typer.echo(f"wrote {out / weights_file} (sha256 {card['sha256']}), the tokenizer "
               f"(sha256 {card['tokenizer_sha256']}) and {out / card_file}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add ``train shapes-clip`` to the ``train`` group."""
    train_app.command("shapes-clip")(train_shapes_clip_command)
