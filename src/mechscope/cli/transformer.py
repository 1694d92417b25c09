"""The transformer-circuits verbs of the ``mechscope`` command (registered on ``cli.app`` by ``register``):
``heads``, ``composition``, ``ov``, ``qk``, and ``train attn-only``.  Each parses, calls library functions and
prints a table or JSON; pictures and JSON go to ``--out`` where there is something to look at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mechscope.errors import MechscopeError
from mechscope.units import parse_head
from mechscope.zoo.registry import load_language_model
from mechscope.plots import new_figure as _figure
from mechscope.plots import save_figure as _save_fig

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
    from mechscope.transformer.circuits import copying_scores
    from mechscope.transformer.heads import classify_heads, head_scores, repeated_tokens
    from mechscope.zoo.attn_only import with_layer_norm_folded

    net, tok = load_language_model(model, weights)
    low = 3 if tok is not None else 0
    tokens = repeated_tokens(net.cfg.d_vocab, min(50, (net.cfg.n_ctx - 1) // 2), 16,
                             bos=tok.bos_id if tok is not None else 0, seed=1, low=low)
    scores = head_scores(net, tokens)
    folded = with_layer_norm_folded(net)
    scores["copying"] = copying_scores(folded)
    kinds = {f"{r['head']}": r["kind"] for r in classify_heads({k: v for k, v in scores.items() if k != "copying"})}
    rows = [{"head": f"{l}.{h}", **{k: round(float(v[l, h]), 4) for k, v in scores.items()},
             "kind": kinds.get(f"{l}.{h}", "")} for l in range(net.cfg.n_layers) for h in range(net.cfg.n_heads)]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{model}_heads.json").write_text(json.dumps(rows, indent=2) + "\n")
    fig, axes = _figure(1, 4, figsize=(11, 0.9 + 0.5 * net.cfg.n_layers))
    for ax, key in zip(axes, ("previous_token", "duplicate_token", "induction", "copying"), strict=True):
        image = ax.imshow(scores[key].float().numpy(), cmap="RdBu_r" if key == "copying" else "viridis",
                          vmin=-1 if key == "copying" else 0, vmax=1)
        ax.set_title(key, fontsize=8)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        fig.colorbar(image, ax=ax, shrink=0.7)
    _save_fig(fig, out / f"{model}_heads.png")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'head':<6} {'prev':>6} {'dup':>6} {'induct':>7} {'copying':>8}  kind")
    for r in rows:
        typer.echo(f"{r['head']:<6} {r['previous_token']:>6.3f} {r['duplicate_token']:>6.3f} {r['induction']:>7.3f} "
                   f"{r['copying']:>8.3f}  {r['kind']}")
    typer.echo(f"wrote {out / f'{model}_heads.json'} and .png")


def composition(model: str = typer.Argument(..., help="A model with at least two layers."),
                kind: str = typer.Option("k", help="q | k | v"), weights: str = WEIGHTS, as_json: bool = JSON,
                top: int = typer.Option(5, help="Strongest head pairs to list."), out: Path = OUT) -> None:
    """Composition scores between every pair of heads in different layers, with the random-matrix baseline."""
    from mechscope.transformer.circuits import composition_baseline, composition_scores
    from mechscope.zoo.attn_only import with_layer_norm_folded

    if kind not in ("q", "k", "v"):
        raise MechscopeError(f"--kind must be q, k or v, not {kind!r}")
    net, _ = load_language_model(model, weights)
    if net.cfg.n_layers < 2:
        raise MechscopeError(f"{model} has one layer: composition needs heads in two layers")
    folded = with_layer_norm_folded(net)
    scores = composition_scores(folded, kind)                           # [L, H, L, H]
    baseline = composition_baseline(net.cfg.d_model, net.cfg.d_head)
    L, H = net.cfg.n_layers, net.cfg.n_heads
    flat = scores.reshape(L * H, L * H)
    order = flat.flatten().argsort(descending=True)[:top].tolist()
    pairs = [{"from": f"{i // (L * H) // H}.{i // (L * H) % H}", "to": f"{i % (L * H) // H}.{i % (L * H) % H}",
              "score": round(float(flat.flatten()[i]), 4)} for i in order]
    payload = {"model": model, "kind": kind, "baseline": round(baseline, 4), "top": pairs,
               "scores": [[round(float(v), 4) for v in row] for row in flat]}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{model}_composition_{kind}.json").write_text(json.dumps(payload, indent=2) + "\n")
    fig, ax = _figure(figsize=(4.5, 4))
    image = ax.imshow(flat.numpy(), cmap="viridis", vmin=0)
    labels = [f"{l}.{h}" for l in range(L) for h in range(H)]
    ax.set_xticks(range(L * H), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(L * H), labels, fontsize=6)
    ax.set_xlabel("later head")
    ax.set_ylabel("earlier head")
    ax.set_title(f"{kind.upper()}-composition (baseline {baseline:.3f})", fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8)
    _save_fig(fig, out / f"{model}_composition_{kind}.png")
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(f"{kind.upper()}-composition, random baseline {baseline:.3f}; strongest pairs:")
    for p in pairs:
        typer.echo(f"  {p['from']} -> {p['to']}: {p['score']:.3f}")


def _circuit_verb(which: str, model: str, head: str, top: int, weights: str, as_json: bool) -> None:
    from mechscope.transformer.circuits import copying_scores, ov_circuit, qk_circuit, top_token_pairs
    from mechscope.zoo.attn_only import with_layer_norm_folded

    net, tok = load_language_model(model, weights)
    layer, h = _head(head, net)
    folded = with_layer_norm_folded(net)
    circuit = (ov_circuit if which == "ov" else qk_circuit)(folded, layer, h)
    pairs = top_token_pairs(circuit, top, tok)
    names = ("source", "logit") if which == "ov" else ("query", "key")
    rows = [{names[0]: p.row_token if p.row_token is not None else p.row,
             names[1]: p.col_token if p.col_token is not None else p.col, "value": round(p.value, 4)}
            for p in pairs]
    payload: dict[str, Any] = {"model": model, "head": head, "circuit": which, "top": rows}
    if which == "ov":
        payload["copying_score"] = round(float(copying_scores(folded)[layer, h]), 4)
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    if which == "ov":
        typer.echo(f"head {head} OV circuit (attending to SOURCE raises LOGIT); copying score "
                   f"{payload['copying_score']:+.3f}")
    else:
        typer.echo(f"head {head} QK circuit (QUERY attends to KEY)")
    for r in rows:
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
    threads: int = typer.Option(2, help="CPU threads."),
    corpus_mb: float = typer.Option(20.0, help="Size of the offline corpus to build, in MB."),
    vocab: int = typer.Option(1024, help="BPE vocabulary size."),
) -> None:
    """Train an attention-only organism with the recipe's curriculum (seeded, resumable, progress bar)."""
    from dataclasses import replace

    from mechscope.zoo.organisms.attn_only_recipe import AttnOnlyRecipe, train_attn_only

    recipe = replace(AttnOnlyRecipe(n_layers=layers, seed=seed, threads=threads, d_vocab=vocab,
                                    corpus_bytes=int(corpus_mb * 1e6)),
                     **({"steps": steps} if steps is not None else {}))
    folder = out or Path(f"out/train/attn-only-{layers}l")
    card = train_attn_only(folder, recipe)
    f = card["final"]
    typer.echo(f"held-out loss {f['held_out_loss']}; best previous-token per layer "
               f"{[max(x) for x in f['previous_token']]}, best induction per layer {[max(x) for x in f['induction']]}")
    typer.echo(f"wrote {folder}/{card['name']}.safetensors, .tokenizer.json and .json")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add the transformer verbs to the ``mechscope`` app (and ``train attn-only`` to its ``train`` group)."""
    app.command("heads")(heads)
    app.command("composition")(composition)
    app.command("ov")(ov)
    app.command("qk")(qk)
    train_app.command("attn-only")(train_attn_only_command)
