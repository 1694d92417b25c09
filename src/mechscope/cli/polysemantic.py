"""The ``polysemantic`` verb of the ``mechscope`` command (registered by ``register``): the most polysemantic
units of a layer (entropy of their top-k dataset examples' concept labels over the shapes world), as JSON and a
PNG, through ``vision.evidence.polysemantic_report.polysemantic_units``; and ``train shapes-sae``, which retrains
the bundled mixed3b SAE of the polysemanticity claim (``reproduce.polysemantic_sae.train_mixed3b_sae``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def polysemantic(model: str = typer.Argument(..., help="A zoo image model, e.g. shapes."),
                 layer: str = typer.Argument(..., help="The layer whose units to measure, e.g. mixed3b."),
                 k: int = typer.Option(50, "--k", help="Top-k dataset examples per unit."),
                 top: int = typer.Option(10, "--top", help="How many of the most polysemantic units to show."),
                 images: int = typer.Option(2000, help="Images of the shapes world to scan."),
                 seed: int = typer.Option(1000, help="World seed (default: the shapes organism's held-out world)."),
                 threads: int = typer.Option(2, help="CPU threads."),
                 out: Path = typer.Option(Path("out/polysemantic"), help="Output folder."),
                 as_json: bool = typer.Option(False, "--json", help="Print the JSON instead of a summary.")) -> None:
    """Rank LAYER's units by the entropy (bits) of the concept labels of their top-k images; write
    polysemantic_LAYER.json and .png."""
    import torch

    from mechscope.vision.evidence.polysemantic_report import polysemantic_units

    torch.set_num_threads(threads)
    r = polysemantic_units(out, model, layer, k=k, top=top, images=images, seed=seed)
    if as_json:
        typer.echo(json.dumps(r, indent=2))
        return
    typer.echo(f"{r['model']} {layer}: {r['live_units']} of {r['units']} units live; median entropy "
               f"{r['median_entropy_bits_live']:.2f} bits (top-{k} of {images} images)")
    for u in r["most_polysemantic"]:
        labels = ", ".join(f"{name} {share:.0%}" for name, share in u["top_labels"])
        typer.echo(f"  {layer}:{u['channel']:<4} {u['entropy_bits']:.2f} bits ({u['effective_labels']:.1f} labels): "
                   f"{labels}")
    typer.echo(f"wrote {out}/polysemantic_{layer}.json and .png")


def train_sae_command(out: Path = typer.Option(Path("out/train/shapes-sae"), help="Output folder."),
                      steps: int = typer.Option(None, help="SAE steps (default: the recipe's, 1000)."),
                      images: int = typer.Option(None, help="Training-world images (default: the recipe's, 512)."),
                      threads: int = typer.Option(None, help="CPU threads (default: the recipe's, 1).")) -> None:
    """Retrain the SAE on the shapes organism's mixed3b that `reproduce sae-latents-more-monosemantic` reads."""
    from dataclasses import replace

    from mechscope.reproduce.polysemantic_sae import SAERecipe, train_mixed3b_sae

    recipe = replace(SAERecipe(), **{key: value for key, value in (("steps", steps), ("images", images),
                                                                   ("threads", threads)) if value is not None})
    card = train_mixed3b_sae(out, recipe)
    typer.echo(f"SAE {card['d_in']} -> {recipe.n_latents} (top-{recipe.k}) on {card['rows']} rows in "
               f"{card['seconds']} s; unexplained variance {card['fraction_of_variance_unexplained']:.3f}; wrote {out}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add ``polysemantic`` to ``app`` and ``shapes-sae`` to the ``train`` group."""
    app.command("polysemantic")(polysemantic)
    train_app.command("shapes-sae")(train_sae_command)
