"""The superposition verbs of the ``mechscope`` command: ``superposition list``, ``superposition run
EXPERIMENT``, ``sae toy`` and ``sae layer`` (registered by ``register``).  Each parses, calls one library function
(which writes JSON, weights and pictures to ``--out``) and prints its summary."""

from __future__ import annotations

import json
from pathlib import Path

import typer

superposition_app = typer.Typer(help="Toy Models of Superposition: the paper's experiments, one command each.",
                                no_args_is_help=True)
sae_app = typer.Typer(help="Sparse autoencoders that recover superposed features.", no_args_is_help=True)


@superposition_app.command("list")
def list_experiments(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """The experiments and their settings."""
    from mechscope.superposition.experiments import EXPERIMENTS

    rows = [{"name": e.name, "description": e.description} for e in EXPERIMENTS.values()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['name']:<16} {r['description']}")


@superposition_app.command("run")
def run(experiment: str = typer.Argument(..., help="An experiment name (`mechscope superposition list`)."),
        out: Path = typer.Option(None, help="Output folder (default out/superposition/EXPERIMENT)."),
        steps: int = typer.Option(None, help="Training steps (default: the experiment's, 10,000)."),
        k: int = typer.Option(None, help="Seeds per setting, the lowest loss kept (default: the experiment's)."),
        threads: int = typer.Option(2, help="CPU threads."),
        as_json: bool = typer.Option(False, "--json", help="Print results.json instead of a summary.")) -> None:
    """Train every setting of EXPERIMENT at once; write results.json, weights.safetensors and its figures."""
    import torch

    from mechscope.superposition.experiments import run_experiment

    torch.set_num_threads(threads)
    folder = out or Path("out/superposition") / experiment
    result = run_experiment(experiment, folder, steps=steps, k=k, progress=not as_json)
    if as_json:
        typer.echo((folder / "results.json").read_text())
        return
    typer.echo(f"{experiment}: {len(result.instances)} instances in {result.seconds} s; "
               f"figures {', '.join(result.figures)}")
    if result.summary:
        typer.echo(json.dumps(result.summary))
    typer.echo(f"wrote {folder}/results.json, weights.safetensors and {len(result.figures)} PNGs")


@sae_app.command("toy")
def sae_toy(features: int = typer.Option(5, help="Toy model features n."),
            hidden: int = typer.Option(2, help="Toy model hidden dimensions m."),
            density: float = typer.Option(0.05, help="Feature probability 1 - S."),
            decay: float = typer.Option(0.9, help="Importance of feature i: decay ** i."),
            latents: int = typer.Option(10, help="SAE dictionary size."),
            kind: str = typer.Option("relu", help="relu (L1) | topk"),
            l1: float = typer.Option(0.3, help="L1 coefficient (relu)."),
            topk: int = typer.Option(1, "--k", help="Active latents (topk)."),
            steps: int = typer.Option(3000, help="SAE steps."),
            toy_steps: int = typer.Option(10_000, help="Toy model steps."),
            out: Path = typer.Option(Path("out/sae/toy"), help="Output folder.")) -> None:
    """Train a toy model, then an SAE on its hidden activations; score the recovery of the true features."""
    from mechscope.superposition.experiments import sae_toy as run_sae_toy

    r = run_sae_toy(out, features=features, hidden=hidden, density=density, decay=decay, latents=latents,
                    kind=kind, l1=l1, k=topk, steps=steps, toy_steps=toy_steps)
    typer.echo(f"SAE ({kind}, {latents} latents) recovers the toy model's {features - r['excluded_features']} "
               f"represented features with mean max cosine {r['mean_max_cosine']:.4f}; wrote {out}")


@sae_app.command("layer")
def sae_layer(model: str = typer.Argument(..., help="A zoo image model, e.g. shapes."),
              layer: str = typer.Argument(..., help="The layer whose activations to decompose, e.g. mixed3b."),
              dataset: str = typer.Option("shapes:256", help="A folder of images or shapes:N[:SEED]."),
              latents: int = typer.Option(1024, help="Dictionary size."),
              kind: str = typer.Option("topk", help="relu (L1) | topk"),
              l1: float = typer.Option(1e-3, help="L1 coefficient (relu)."),
              topk: int = typer.Option(16, "--k", help="Active latents (topk)."),
              steps: int = typer.Option(2000, help="SAE steps."),
              max_rows: int = typer.Option(200_000, help="Activation rows kept (positions x images)."),
              out: Path = typer.Option(Path("out/sae/layer"), help="Output folder.")) -> None:
    """Train an SAE on a layer's activations (every position of every image is a row)."""
    from mechscope.dictionary.sae import SAEConfig, sae_on_layer

    config = SAEConfig(d_in=1, n_latents=latents, kind=kind, l1=l1, k=topk, steps=steps)  # d_in: the layer's
    r = sae_on_layer(out, model, layer, dataset=dataset, config=config, max_rows=max_rows)
    typer.echo(f"{r['model']} {layer}: {r['rows']} rows of {r['width']}; SAE L0 {r['final']['l0']:.1f}, "
               f"unexplained variance {r['fraction_of_variance_unexplained']:.3f}; wrote {out}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add ``superposition`` and ``sae`` to the ``mechscope`` app."""
    app.add_typer(superposition_app, name="superposition")
    app.add_typer(sae_app, name="sae")
