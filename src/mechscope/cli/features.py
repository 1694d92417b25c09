"""The ``features`` verb of the ``mechscope`` command: the top token contexts, logit effects and firing frequency of
one MLP neuron or dictionary latent (``--unit``), or without ``--unit`` the monosemanticity of all of them beside
random directions.  It parses, calls ``mechscope.transformer.features`` / ``.monosemanticity`` and prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import typer

from mechscope.errors import MechscopeError
from mechscope.zoo.registry import load_language_model


def _tokens(model: str, path: Path | None, rows: int | None) -> torch.Tensor:
    """Token rows ``[N, n_ctx]``: from ``path`` (``.npy`` of ``save_tokens`` or ``.safetensors`` with ``tokens``),
    else the bundled held-out sample of mlp-1l (the only language organism that ships one)."""
    from safetensors.torch import load_file

    from mechscope.data.tokenizer import load_tokens
    from mechscope.zoo.organisms.mlp_sae_recipe import SAMPLE
    from mechscope.zoo.registry import bundle_dir

    if path is None:
        if model != "mlp-1l":
            raise MechscopeError(f"{model} ships no held-out sample: pass --tokens FILE (.npy or .safetensors rows)")
        path = bundle_dir() / SAMPLE
    if not Path(path).is_file():
        raise MechscopeError(f"no token file at {str(path)!r}")
    if str(path).endswith(".safetensors"):
        tokens = load_file(str(path))["tokens"]
    else:
        tokens = torch.from_numpy(load_tokens(path, mmap=False).astype("int64"))
    return tokens.long()[:rows]


def _sae(name: str | None, model: str) -> tuple[Any, str | None]:
    if name is None:
        return None, None
    from mechscope.zoo.dictionaries import get_dictionary, load_dictionary
    from mechscope.zoo.registry import get_card

    row = get_dictionary(name)
    if row.model != get_card(model).name:
        raise MechscopeError(f"dictionary {name} reads {row.model}'s {row.hook}, not {model}; use it with "
                             f"`mechscope features {row.model} --sae {name}`")
    return load_dictionary(name)[0], row.hook


def features(
    model: str = typer.Argument(..., help="A language model with an MLP, e.g. mlp-1l."),
    sae: str = typer.Option(None, help="A bundled dictionary on the model (e.g. mlp-1l-sae): its latents are units."),
    unit: int = typer.Option(None, help="One neuron (or latent with --sae); without it: the monosemanticity summary."),
    k: int = typer.Option(20, help="Top contexts per unit."),
    hook: str = typer.Option(None, help="Hook point (default: the dictionary's, else blocks.0.mlp.hook_post)."),
    tokens: Path = typer.Option(None, help="Token rows to scan (default: mlp-1l's bundled held-out sample)."),
    rows: int = typer.Option(None, help="Scan only the first ROWS rows."),
    context: int = typer.Option(8, help="Tokens shown either side of the max token."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Top-activating contexts, logit effects and firing frequency of an MLP neuron or SAE latent."""
    from mechscope.transformer.features import feature_contexts
    from mechscope.transformer.monosemanticity import (logit_effects, monosemanticity, random_directions,
                                                       unit_direction)

    net, tok = load_language_model(model)
    if tok is None:
        raise MechscopeError(f"{model} ships no tokenizer to decode contexts with")
    dictionary, sae_hook = _sae(sae, model)
    point = hook or sae_hook or "blocks.0.mlp.hook_post"
    if sae_hook is not None and point != sae_hook:
        raise MechscopeError(f"dictionary {sae} reads {sae_hook}, not {point}")
    text = _tokens(model, tokens, rows)
    fc = feature_contexts(net, text, point, sae=dictionary, k=k, context=context, tokenizer=tok)
    kind = fc.kind
    if unit is not None:
        u = fc.check_unit(unit)
        if not (point.startswith("blocks.") and point.endswith(".mlp.hook_post")):
            raise MechscopeError(f"--unit reads an MLP's output direction: use a blocks.L.mlp.hook_post hook, not "
                                 f"{point}")
        effects = logit_effects(net, unit_direction(net, u, dictionary, int(point.split(".")[1])), 10, tok)
        ctx = fc.contexts(u)
        edges, counts = fc.histogram(u)
        payload = {"model": model, "hook": point, "kind": kind, "unit": u, "frequency": float(fc.frequency[u]),
                   "tokens": fc.tokens, "contexts": [{"value": c.value, "row": c.row, "position": c.position,
                                                      "max_token": c.max_token, "text": c.text} for c in ctx],
                   "promoted": [[t, v] for _, t, v in effects.promoted],
                   "suppressed": [[t, v] for _, t, v in effects.suppressed],
                   "histogram": {"edges": edges, "counts": counts}}
        if as_json:
            typer.echo(json.dumps(payload, indent=2))
            return
        typer.echo(f"{kind} {u} of {point} on {model}: fires (> 0) on {payload['frequency']:.2%} of {fc.tokens} tokens")
        typer.echo(f"top {len(ctx)} contexts (max token in [[ ]]):")
        for c in ctx:
            typer.echo(f"  {c.value:8.3f}  {c.text!r}")
        typer.echo("promotes:   " + ", ".join(f"{t!r} {v:+.2f}" for _, t, v in effects.promoted))
        typer.echo("suppresses: " + ", ".join(f"{t!r} {v:+.2f}" for _, t, v in effects.suppressed))
        return
    width = net.cfg.d_mlp if hasattr(net, "cfg") else fc.units
    control = feature_contexts(net, text, point, units=random_directions(width, width, 0), k=k, tokenizer=tok)
    scores = {f"{kind}s": monosemanticity(fc, tok), "random_directions": monosemanticity(control, tok)}
    payload = {"model": model, "hook": point, "tokens": fc.tokens, "k": k,
               "dead": int((fc.fired == 0).sum()), "units": fc.units,
               **{name: {"class_concentration": round(s.mean, 4), "scored": s.scored, "units": s.units}
                  for name, s in scores.items()}}
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(f"{fc.units} {kind}s of {point} on {model}, {fc.tokens} tokens; {payload['dead']} never fire")
    for name, s in scores.items():
        typer.echo(f"  {name:<18} top-{k} max-token class concentration {s.mean:.3f} ({s.scored}/{s.units} scored)")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add ``features`` to the ``mechscope`` app."""
    app.command("features")(features)
