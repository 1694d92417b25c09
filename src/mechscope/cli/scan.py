"""The dataset-scan verbs: ``examples`` (top/bottom dataset examples) and ``stats`` (activation statistics)."""

from __future__ import annotations

from pathlib import Path

import typer


def _scan_to_store(verb: str, model: str, layer_names: list[str], dataset: str, out: Path, **options) -> None:
    """The body of ``examples`` and ``stats``: one library call, then its summary."""
    from mechscope.devices import AMP_ON_CPU, checked_device
    from mechscope.vision.evidence.scan_run import scan_to_store

    if options.get("amp") and checked_device(options.get("device")).type != "cuda":
        typer.echo(AMP_ON_CPU, err=True)

    s = scan_to_store(out, model, layer_names, dataset, name=verb, **options,
                      on_resume=lambda path: typer.echo(f"continuing the scan checkpointed in {path}"))
    typer.echo(f"scanned {s.seen} images of {dataset} with {s.model} ({s.weights}) at {s.size}px: "
               + ", ".join(f"{n} {t} rows" for t, n in s.written.items() if n))
    reasons = "; ".join(f"{kind} x{n}" for kind, n in s.skipped_by_kind().items())
    typer.echo(f"skipped {len(s.skipped)} unreadable files" + (f": {reasons}" if reasons else ""))
    typer.echo(f"wrote {out / 'index.sqlite'}" + (f" and {len(s.plots)} plots under {out / 'plots'}" if s.plots else ""))


# options shared by the scan verbs (typer reads them as defaults)
_DATASET = typer.Option(..., help="A folder of images, or shapes:N[:SEED].")
_WEIGHTS = typer.Option("bundled", help="bundled | random | download | a path to a weights file.")
_SEED = typer.Option(0, help="Seed of random weights.")
_BATCH = typer.Option(64, help="Images per forward pass.")
_SIZE = typer.Option(None, help="Image size (default: the model card's input size).")
_DEVICE = typer.Option(None, help="cpu, cuda, cuda:N (default: CUDA when available); on a Ray cluster, each shard "
                                   "runs there when its worker has it, else on the CPU.")
_AMP = typer.Option(False, "--amp", help="Forward passes in bfloat16 autocast on CUDA (statistics still "
                                         "accumulate in float64); no effect on the CPU.")
_RAY = typer.Option(None, "--ray", envvar="RAY_ADDRESS", metavar="ADDRESS",
                    help="Run the scan on this Ray cluster (auto, HOST:PORT) as image ranges merged exactly; "
                         "default: in this process.")


def examples(
    model: str = typer.Argument(..., help="A zoo model name, e.g. inceptionv1."),
    layer_names: list[str] = typer.Argument(..., metavar="LAYER...", help="Layers, e.g. mixed3b_pre_relu mixed4a."),
    dataset: str = _DATASET,
    top_k: int = typer.Option(16, "--top-k", help="Top and bottom examples kept per unit."),
    out: Path = typer.Option(Path("out/examples"), help="Results folder (SQLite index + PNGs); reruns resume."),
    weights: str = _WEIGHTS,
    seed: int = _SEED,
    batch_size: int = _BATCH,
    size: int = _SIZE,
    device: str = _DEVICE,
    amp: bool = _AMP,
    ray: str = _RAY,
) -> None:
    """Dataset examples of every unit of LAYERS: top/bottom-k images with receptive-field crops, into OUT."""
    _scan_to_store("examples", model, layer_names, dataset, out, top_k=top_k, weights=weights, seed=seed,
                   batch_size=batch_size, device=device, amp=amp, size=size, plot_units=0, examples=True, stats=False,
                   ray=ray)


def stats(
    model: str = typer.Argument(..., help="A zoo model name, e.g. inceptionv1."),
    layer_names: list[str] = typer.Argument(..., metavar="LAYER...", help="Layers; pre-ReLU ones show the whole "
                                            "distribution, e.g. mixed3b_pre_relu."),
    dataset: str = _DATASET,
    out: Path = typer.Option(Path("out/stats"), help="Results folder (SQLite index + PNGs); reruns resume."),
    plot_units: int = typer.Option(4, help="Plot the first N units of each layer (log-probability plot, quilt)."),
    weights: str = _WEIGHTS,
    seed: int = _SEED,
    batch_size: int = _BATCH,
    size: int = _SIZE,
    device: str = _DEVICE,
    amp: bool = _AMP,
    ray: str = _RAY,
) -> None:
    """Activation statistics of every unit of LAYERS (moments, firing, quantiles, histogram) and plots, into OUT."""
    _scan_to_store("stats", model, layer_names, dataset, out, top_k=1, weights=weights, seed=seed,
                   batch_size=batch_size, device=device, amp=amp, size=size, plot_units=plot_units, examples=False,
                   stats=True, ray=ray)


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add the verbs of this module to the ``mechscope`` app."""
    app.command("examples")(examples)
    app.command("stats")(stats)
