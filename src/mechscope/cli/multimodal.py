"""The multimodal verbs of the ``mechscope`` command (registered by ``register``), on image–text models
(``shapes-clip``, ``clip-*``) and the multimodal world, through ``vision.multimodal.organism``:

- ``multimodal MODEL LAYER``: per unit its strongest concept in each modality (picture, sketch, word), σ, and
  whether it is multimodal (picture vs word, picture vs sketch) at ``--margin``;
- ``typographic MODEL``: the flip rate of a shape's picture with another shape's name written on it, with the
  random-letter and own-word controls;
- ``zeroshot MODEL``: zero-shot shape accuracy per style, or with ``--dataset DIR`` on a folder of images with one
  subfolder per class.

A model without a text tower is refused, naming the image–text models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

_WEIGHTS_HELP = "bundled | random | download | a path (default: the model's own default)."


def _load(model: str, weights: str | None, seed: int):
    import torch

    from mechscope.vision.multimodal.organism import require_image_text
    from mechscope.zoo.registry import get_card, load

    torch.set_num_threads(1)
    card = get_card(model)
    net = load(card.name, device="cpu", **({"weights": weights, "seed": seed} if weights else {}))
    require_image_text(net, card.name)
    if getattr(net, "tokenizer", True) is None:          # shapes-clip with random weights: attach the bundled one
        net.tokenizer = load(card.name, device="cpu").tokenizer
    return net.eval()


def multimodal(model: str = typer.Argument(..., help="An image-text model: shapes-clip or clip-*."),
               layer: str = typer.Argument(..., help="An image layer, e.g. mixed4b or image_embed."),
               margin: float = typer.Option(0.25, "--margin", help="Lead (σ) over the runner-up concept in both "
                                                                    "modalities for a unit to count as multimodal."),
               per_cell: int = typer.Option(20, help="Stimuli per (concept, modality)."),
               weights: Optional[str] = typer.Option(None, help=_WEIGHTS_HELP),
               seed: int = typer.Option(0, help="Seed of random weights."),
               as_json: bool = typer.Option(False, "--json", help="Print the JSON instead of a summary.")) -> None:
    """Per unit of LAYER: the strongest of the ten shapes as a picture, a sketch and a written word (σ of the
    stimuli) and whether it agrees between picture and word (and picture and sketch) with a lead >= --margin."""
    from mechscope.vision.multimodal.organism import unit_modality_report

    r = unit_modality_report(_load(model, weights, seed), layer, per_cell=per_cell, margin=margin)
    d = r.as_dict()
    if as_json:
        typer.echo(json.dumps({"model": model, **d}, indent=2))
        return
    counts = ", ".join(f"{k} {v}" for k, v in d["counts"].items())
    typer.echo(f"{model} {layer}: {len(d['units'])} units; multimodal at margin {margin} σ: {counts}")
    for row in d["units"]:
        s, z = row["strongest"], row["sigma"]
        flags = " ".join(k for k, v in row["multimodal"].items() if v)
        typer.echo(f"  {layer}:{row['unit']:<4} " + "  ".join(f"{m} {s[m]} ({z[m]:+.2f})" for m in s)
                   + (f"  MULTIMODAL {flags}" if flags else ""))


def typographic(model: str = typer.Argument(..., help="An image-text model: shapes-clip or clip-*."),
                n: int = typer.Option(300, "--n", help="Pictures attacked (shapes balanced)."),
                world_seed: int = typer.Option(3100, "--world-seed", help="World seed of the pictures."),
                weights: Optional[str] = typer.Option(None, help=_WEIGHTS_HELP),
                seed: int = typer.Option(0, help="Seed of random weights."),
                as_json: bool = typer.Option(False, "--json", help="Print the JSON instead of a summary.")) -> None:
    """Typographic attack: pictures of shape A with shape B's name written on them; how often the zero-shot
    prediction flips to B, against random letter strings of B's length and A's own name."""
    from mechscope.vision.multimodal.organism import typographic_attack

    r = typographic_attack(_load(model, weights, seed), n=n, seed=world_seed)
    d = r.as_dict()
    if as_json:
        typer.echo(json.dumps({"model": model, **d}, indent=2))
        return
    a, rnd, own = d["attack"], d["random_letters"], d["own_word"]
    typer.echo(f"{model}: {n} pictures, clean accuracy {a['clean_accuracy']:.3f}")
    typer.echo(f"  word B written:         flips to B {a['flip_rate']:.3f}, accuracy {a['attacked_accuracy']:.3f}")
    typer.echo(f"  random letters (ctrl):  flips to B {rnd['flip_rate']:.3f}, accuracy {rnd['attacked_accuracy']:.3f}")
    typer.echo(f"  own word A (ctrl):      accuracy {own['attacked_accuracy']:.3f}")


def zeroshot(model: str = typer.Argument(..., help="An image-text model: shapes-clip or clip-*."),
             styles: Optional[List[str]] = typer.Option(None, "--styles", help="Styles (repeat or comma-separate): "
                                                        "picture, sketch, word, picture+word (default: all)."),
             n: int = typer.Option(200, "--n", help="Items per style (shapes balanced)."),
             world_seed: int = typer.Option(3000, "--world-seed", help="World seed of the items."),
             weights: Optional[str] = typer.Option(None, help=_WEIGHTS_HELP),
             seed: int = typer.Option(0, help="Seed of random weights."),
             dataset: Optional[Path] = typer.Option(None, "--dataset", help="A folder with one subfolder of images "
                                                    "per class (named by the class) to classify instead of the "
                                                    "world, by the prompts 'a picture of a {class}'."),
             as_json: bool = typer.Option(False, "--json", help="Print the JSON instead of a summary.")) -> None:
    """Zero-shot accuracy over the ten shapes per style, by the nearest prompt ("a picture of a star", "a drawing
    of a star", "the word star"); with --dataset, over the class subfolders of a folder of images."""
    from mechscope.data.concepts import STYLES
    from mechscope.vision.multimodal.organism import zeroshot as run

    if dataset is not None:
        from mechscope.vision.multimodal.folder_zeroshot import folder_classes, folder_zeroshot

        folder_classes(dataset)                          # a bad folder is refused before the model loads
        r = folder_zeroshot(_load(model, weights, seed), dataset)
        if as_json:
            typer.echo(json.dumps({"model": model, "dataset": str(dataset), **r.as_dict()}, indent=2))
            return
        typer.echo(f"{model}: zero-shot accuracy on {dataset} ({len(r.classes)} classes, {r.n} images): "
                   f"{r.accuracy:.3f}")
        for c, v in r.per_class.items():
            typer.echo(f"  {c:<13} {v:.3f}")
        if r.unlabelled or r.skipped:
            typer.echo(f"  left out: {r.unlabelled} images outside class subfolders, {r.skipped} unreadable")
        return
    chosen = tuple(s.strip() for group in (styles or []) for s in group.split(",") if s.strip()) or STYLES
    acc = run(_load(model, weights, seed), chosen, n=n, seed=world_seed)
    if as_json:
        typer.echo(json.dumps({"model": model, "n": n, "world_seed": world_seed, "accuracy": acc}, indent=2))
        return
    typer.echo(f"{model}: zero-shot accuracy over the ten shapes, {n} items per style")
    for k, v in acc.items():
        typer.echo(f"  {k:<13} {v:.3f}")


def text_search(model: str = typer.Argument(..., help="An image-text model with a BPE tokenizer: shapes-clip."),
                unit: str = typer.Argument(..., help="A unit, e.g. image_embed:5 or mixed4b:12."),
                max_words: int = typer.Option(4, "--max-words", help="Longest text searched (words)."),
                beam: int = typer.Option(8, "--beam", help="Texts kept at each length."),
                k: int = typer.Option(5, "--k", help="Texts printed per list."),
                weights: Optional[str] = typer.Option(None, help=_WEIGHTS_HELP),
                seed: int = typer.Option(0, help="Seed of random weights."),
                as_json: bool = typer.Option(False, "--json", help="Print the JSON instead of a summary.")) -> None:
    """Text feature visualization of UNIT: the world's captions ranked by how well their text embedding aligns
    with the unit's direction in the joint space, and the free texts a beam search over the tokenizer's words
    finds (scores are cosines)."""
    from mechscope.vision.multimodal.organism import unit_text_search

    r = unit_text_search(_load(model, weights, seed), unit, max_words=max_words, beam=beam, k=k)
    if as_json:
        typer.echo(json.dumps({"model": model, **r}, indent=2))
        return
    typer.echo(f"{model} {r['unit']}: captions ranked / free text searched ({r['vocabulary']} words, up to "
               f"{max_words} words, beam {beam})")
    for a, b in zip(r["ranked"], r["searched"]):
        typer.echo(f"  {a['score']:+.3f} {a['text']:<34} {b['score']:+.3f} {b['text']}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add ``multimodal``, ``typographic``, ``zeroshot`` and ``text-search`` to ``app``."""
    app.command("text-search")(text_search)
    app.command("multimodal")(multimodal)
    app.command("typographic")(typographic)
    app.command("zeroshot")(zeroshot)
