"""The transformer-circuits verbs of the ``mechscope`` command (registered on ``cli.app`` by ``register``):
``heads``, ``composition``, ``ov``, ``qk``, and ``train attn-only``.  Each parses, calls one library function
(``mechscope.transformer.tables``, the attention-only recipe) and prints a table or JSON; pictures and JSON go
to ``--out`` where there is something to look at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mechscope.errors import MechscopeError
from mechscope.units import parse_head
from mechscope.zoo.registry import load_language_model

WEIGHTS = typer.Option("bundled", help="bundled | random | a path to a weights file (ours or TransformerLens's).")
OUT = typer.Option(Path("out/transformer"), help="Output folder for pictures and JSON.")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _head(spec: str, model: Any) -> tuple[int, int]:
    parsed = parse_head(spec)  # LAYER.HEAD (1.3) or blocks.1.attn:3
    layer, head = parsed.layer_index, parsed.head
    cfg = model.cfg
    if not (0 <= layer < cfg.n_layers and 0 <= head < cfg.n_heads):
        raise MechscopeError(f"head {spec} does not exist: the model has layers 0..{cfg.n_layers - 1} and heads "
                             f"0..{cfg.n_heads - 1}")
    return layer, head


def heads(model: str = typer.Argument(..., help="attn-only-1l, attn-only-2l, ..."), weights: str = WEIGHTS,
          as_json: bool = JSON, out: Path = OUT) -> None:
    """Every head's previous-token, duplicate-token and induction score (on [BOS] r r) and OV copying score."""
    from mechscope.transformer.tables import head_table

    net, tok = load_language_model(model, weights)
    table = head_table(net, tok)
    table.save(out, model)
    if as_json:
        typer.echo(json.dumps(table.rows, indent=2))
        return
    typer.echo(f"{'head':<6} {'prev':>6} {'dup':>6} {'induct':>7} {'copying':>8}  kind")
    for r in table.rows:
        typer.echo(f"{r['head']:<6} {r['previous_token']:>6.3f} {r['duplicate_token']:>6.3f} {r['induction']:>7.3f} "
                   f"{r['copying']:>8.3f}  {r['kind']}")
    typer.echo(f"wrote {out / f'{model}_heads.json'} and .png")


def composition(model: str = typer.Argument(..., help="A model with at least two layers."),
                kind: str = typer.Option("k", help="q | k | v"), weights: str = WEIGHTS, as_json: bool = JSON,
                top: int = typer.Option(5, help="Strongest head pairs to list."), out: Path = OUT) -> None:
    """Composition scores between every pair of heads in different layers, with the random-matrix baseline."""
    from mechscope.transformer.tables import composition_table

    net, _ = load_language_model(model, weights)
    table = composition_table(net, kind, top)
    table.save(out, model)
    if as_json:
        typer.echo(json.dumps({"model": model, **table.payload}, indent=2))
        return
    typer.echo(f"{kind.upper()}-composition, random baseline {table.payload['baseline']:.3f}; strongest pairs:")
    for p in table.payload["top"]:
        typer.echo(f"  {p['from']} -> {p['to']}: {p['score']:.3f}")


def _circuit_verb(which: str, model: str, head: str, top: int, weights: str, as_json: bool) -> None:
    from mechscope.transformer.tables import CIRCUIT_COLUMNS, circuit_table

    net, tok = load_language_model(model, weights)
    layer, h = _head(head, net)
    payload = {"model": model, "head": head, **circuit_table(net, which, layer, h, top, tok)}
    payload["head"] = head
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    if which == "ov":
        typer.echo(f"head {head} OV circuit (attending to SOURCE raises LOGIT); copying score "
                   f"{payload['copying_score']:+.3f}")
    else:
        typer.echo(f"head {head} QK circuit (QUERY attends to KEY)")
    names = CIRCUIT_COLUMNS[which]
    for r in payload["top"]:
        typer.echo(f"  {r[names[0]]!r:>16} -> {r[names[1]]!r:<16} {r['value']:+.3f}")


def ov(model: str = typer.Argument(...), head: str = typer.Argument(..., help="LAYER.HEAD, e.g. 1.3"),
       top: int = typer.Option(10, help="Token pairs to list."), weights: str = WEIGHTS, as_json: bool = JSON) -> None:
    """The strongest entries of a head's full OV circuit W_E W_V W_O W_U (which token, attended to, raises
    which logit), and its eigenvalue copying score."""
    _circuit_verb("ov", model, head, top, weights, as_json)


def qk(model: str = typer.Argument(...), head: str = typer.Argument(..., help="LAYER.HEAD, e.g. 0.1"),
       top: int = typer.Option(10, help="Token pairs to list."), weights: str = WEIGHTS, as_json: bool = JSON) -> None:
    """The strongest entries of a head's token QK circuit W_E W_Q W_K^T W_E^T (which query attends to which key)."""
    _circuit_verb("qk", model, head, top, weights, as_json)


def train_attn_only_command(
    layers: int = typer.Option(2, help="Attention layers (the bundled organisms: 1 and 2)."),
    out: Path = typer.Option(None, help="Folder for data, checkpoint, weights, tokenizer and card "
                                         "(default out/train/attn-only-<N>l)."),
    steps: int = typer.Option(None, help="Training steps (default: the recipe's)."),
    seed: int = typer.Option(0, help="Seed of the initialisation, the corpus split and the batches."),
    threads: int = typer.Option(None, help="torch CPU threads (default: the recipe's, 1, as the bundled cards)."),
    corpus_mb: float = typer.Option(None, help="Size of the offline corpus to build, in MB (default: the recipe's)."),
    vocab: int = typer.Option(None, help="BPE vocabulary size (default: the recipe's)."),
    natural: bool = typer.Option(False, "--natural", help="Natural text from the first step, without the curriculum "
                                 "(the attn-only-<N>l-natural runs of the in-context-learning claims)."),
) -> None:
    """Train an attention-only organism with the recipe's curriculum (seeded, resumable, progress bar)."""
    from dataclasses import replace

    from mechscope.transformer.heads import probe_scores
    from mechscope.zoo.organisms.attn_only_recipe import AttnOnlyRecipe, natural_recipe, train_attn_only

    changes = {k: v for k, v in (("steps", steps), ("threads", threads), ("d_vocab", vocab),
                                 ("corpus_bytes", None if corpus_mb is None else int(corpus_mb * 1e6)))
               if v is not None}
    recipe = replace(natural_recipe(layers, seed=seed) if natural else AttnOnlyRecipe(n_layers=layers, seed=seed),
                     **changes)
    folder = out or Path(f"out/train/{recipe.name}")
    card = train_attn_only(folder, recipe, head_scores=probe_scores)
    f = card["final"]
    typer.echo(f"held-out loss {f['held_out_loss']}; best previous-token per layer "
               f"{[max(x) for x in f['previous_token']]}, best induction per layer {[max(x) for x in f['induction']]}")
    typer.echo(f"wrote {folder}/{card['name']}.safetensors, .tokenizer.json and .json")


def train_mlp_command(
    out: Path = typer.Option(Path("out/train/mlp-1l"), help="Folder for data, checkpoint, weights, tokenizer, card."),
    steps: int = typer.Option(None, help="Training steps (default: the recipe's)."),
    seed: int = typer.Option(0, help="Seed of the initialisation, the corpus split and the batches."),
    threads: int = typer.Option(None, help="torch CPU threads (default: the recipe's, 1, as the bundled card)."),
) -> None:
    """Train mlp-1l: one block of attention + GELU MLP on the offline corpus's text (seeded, resumable)."""
    from mechscope.transformer.heads import probe_scores
    from mechscope.zoo.organisms.attn_only_recipe import mlp_recipe, train_attn_only

    changes = {k: v for k, v in (("steps", steps), ("threads", threads)) if v is not None}
    card = train_attn_only(out, mlp_recipe(seed=seed, **changes), head_scores=probe_scores)
    typer.echo(f"held-out loss {card['final']['held_out_loss']}; wrote {out}/mlp-1l.safetensors, "
               ".tokenizer.json and .json")


def train_mlp_sae_command(
    out: Path = typer.Option(Path("out/train/mlp-1l-sae"), help="Folder for the SAE, its card and density plot."),
    model_file: Path = typer.Option(None, help="An mlp-1l.safetensors from `train mlp-1l` (default: the bundled)."),
    data: Path = typer.Option(None, help="A folder whose data/ holds the corpus and tokens (e.g. out/train/mlp-1l; "
                                         "default: built under --out)."),
    steps: int = typer.Option(None, help="SAE training steps (default: the recipe's)."),
) -> None:
    """Train mlp-1l's dictionary: a TopK SAE on blocks.0.mlp.hook_post, scored on held-out text."""
    from mechscope.zoo.organisms.mlp_sae_recipe import MlpSAERecipe, train_mlp_sae

    recipe = MlpSAERecipe() if steps is None else MlpSAERecipe(steps=steps)
    card = train_mlp_sae(out, recipe, model_file=model_file, data_dir=data)
    h = card["held_out"]
    typer.echo(f"L0 {h['l0']}, variance explained {h['fraction_of_variance_explained']}, loss recovered "
               f"{h['loss_recovered']}, dead {h['dead']}, dense {h['dense']}; wrote {out}/{card['name']}.*")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add the transformer verbs to the ``mechscope`` app (and ``train attn-only`` to its ``train`` group)."""
    app.command("heads")(heads)
    app.command("composition")(composition)
    app.command("ov")(ov)
    app.command("qk")(qk)
    train_app.command("attn-only")(train_attn_only_command)
    train_app.command("mlp-1l")(train_mlp_command)
    train_app.command("mlp-1l-sae")(train_mlp_sae_command)
