"""The dataset-scan verbs: ``examples`` (top/bottom dataset examples) and ``stats`` (activation statistics)."""

from __future__ import annotations

from pathlib import Path

import typer


def _scan_to_store(verb: str, model: str, layer_names: list[str], dataset: str, out: Path, *, top_k: int,
                   weights: str, seed: int, batch_size: int, device: str | None, size: int | None,
                   plot_units: int, examples: bool, stats: bool) -> None:
    """The body of ``examples`` and ``stats``: one resumable scan into the store at OUT, then a summary."""
    from mechscope.artefacts import atomic_write_bytes
    from mechscope.data.open import open_dataset
    from mechscope.store import open_store, read_rows
    from mechscope.units import validate
    from mechscope.vision.evidence.scan import scan, skipped_summary
    from mechscope.vision.evidence.scan_store import save_scan
    from mechscope.zoo.registry import get_card, load

    card = get_card(model)
    size = size or int(card.input_shape[-1])
    net = load(card.name, weights=weights, seed=seed, device=device)
    for name in layer_names:
        validate(net, name)
    data = open_dataset(dataset, size)
    settings = {"model": card.name, "weights": str(weights), "seed": seed, "dataset": dataset, "size": size}
    with open_store(out) as store:  # opened first: a damaged index is refused before the scan, not after
        checkpoint = out / f"{verb}.checkpoint.npz"
        if checkpoint.exists():
            typer.echo(f"continuing the scan checkpointed in {checkpoint}")
        state = scan(net, data, layer_names, k=top_k, batch_size=batch_size, checkpoint=checkpoint, settings=settings)
        written = save_scan(store, state, net, data, model_name=card.name, input_size=size, examples=examples,
                            stats=stats, plot_units=plot_units)
        figures = [r for name in layer_names for r in read_rows(store, "figures", model=card.name, layer=name)]
        for r in figures:  # plain copies of the plots, for a look without the store
            where = "layer" if r["channel"] < 0 else str(r["channel"])
            atomic_write_bytes(out / "plots" / r["layer"] / f"{where}_{r['kind']}.png", (out / r["png"]).read_bytes())
    typer.echo(f"scanned {state.seen} images of {dataset} with {card.name} ({weights}) at {size}px: "
               + ", ".join(f"{n} {t} rows" for t, n in written.items() if n))
    summary = skipped_summary(state.skipped)
    reasons = "; ".join(f"{kind} x{n}" for kind, n in summary.items())
    typer.echo(f"skipped {len(state.skipped)} unreadable files" + (f": {reasons}" if reasons else ""))
    typer.echo(f"wrote {out / 'index.sqlite'}" + (f" and {len(figures)} plots under {out / 'plots'}" if figures else ""))


# options shared by the scan verbs (typer reads them as defaults)
_DATASET = typer.Option(..., help="A folder of images, or shapes:N[:SEED].")
_WEIGHTS = typer.Option("bundled", help="bundled | random | download | a path to a weights file.")
_SEED = typer.Option(0, help="Seed of random weights.")
_BATCH = typer.Option(64, help="Images per forward pass.")
_SIZE = typer.Option(None, help="Image size (default: the model card's input size).")
_DEVICE = typer.Option(None, help="cpu, cuda, cuda:1, ... (default: CUDA when available).")


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
) -> None:
    """Dataset examples of every unit of LAYERS: top/bottom-k images with receptive-field crops, into OUT."""
    _scan_to_store("examples", model, layer_names, dataset, out, top_k=top_k, weights=weights, seed=seed,
                   batch_size=batch_size, device=device, size=size, plot_units=0, examples=True, stats=False)


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
) -> None:
    """Activation statistics of every unit of LAYERS (moments, firing, quantiles, histogram) and plots, into OUT."""
    _scan_to_store("stats", model, layer_names, dataset, out, top_k=1, weights=weights, seed=seed,
                   batch_size=batch_size, device=device, size=size, plot_units=plot_units, examples=False, stats=True)


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add the verbs of this module to the ``mechscope`` app."""
    app.command("examples")(examples)
    app.command("stats")(stats)
