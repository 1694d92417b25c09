"""The ``mechscope tms-geometry`` verb (registered by ``register``): the paper's geometry sweep - dimensions per
feature against sparsity, many densities x seeds as one batched model - with its plateaus at 1 and 1/2; writes
``geometry.json`` and ``geometry.png``.  Thin: parse, ``superposition.geometry.run_sweep``, print."""

from __future__ import annotations

from pathlib import Path

import typer


def tms_geometry(features: int = typer.Option(400, help="Features n (the paper's sweep: 400)."),
                 hidden: int = typer.Option(30, help="Hidden dimensions m (the paper's sweep: 30)."),
                 seeds: int = typer.Option(3, help="Instances per density."),
                 dense: int = typer.Option(10, help="Densities with 1/(1-S) in [1, 2]."),
                 sparse: int = typer.Option(18, help="Densities with 1/(1-S) in (2, 1000]."),
                 steps: int = typer.Option(10_000, help="AdamW steps."),
                 batch: int = typer.Option(1024, help="Batch size."),
                 weight_decay: float = typer.Option(0.01, help="AdamW weight decay (the paper's colab: 0.01)."),
                 tol: float = typer.Option(0.03, help="Plateau tolerance around 1 and 1/2."),
                 threads: int = typer.Option(2, help="CPU cores: that many models trained side by side, one core each."),
                 out: Path = typer.Option(Path("out/superposition/geometry_sweep"), help="Output folder.")) -> None:
    """Train the geometry sweep; write geometry.json (per-density mean and spread, plateaus) and geometry.png."""
    import torch

    from mechscope.superposition.geometry import GeometryOptions, density_grid, run_sweep

    torch.set_num_threads(threads)
    options = GeometryOptions(n_features=features, n_hidden=hidden, densities=density_grid(dense, sparse),
                              seeds=seeds, steps=steps, batch_size=batch, weight_decay=weight_decay,
                              workers=max(1, threads))
    s = run_sweep(options, out, tol=tol, progress=True)
    typer.echo(f"n={features}, m={hidden}: {len(options.densities)} densities x {seeds} seeds trained in "
               f"{s['train_seconds']} s")
    for level, v in s["plateaus"].items():
        p, c = v["plateau"], v["control_plateau"]
        found = f"{p['count']} densities, 1/(1-S) {p['x_from']} .. {p['x_to']} ({p['decades']} decades)" if p else "none"
        ctrl = f"{c['decades']} decades" if c else "none"
        typer.echo(f"  plateau at {level}: {found}; smooth control: {ctrl}")
    typer.echo(f"wrote {out}/geometry.json and geometry.png")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    app.command("tms-geometry")(tms_geometry)
