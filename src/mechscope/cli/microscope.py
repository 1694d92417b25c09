"""The Microscope verbs (registered by ``register``): ``microscope build MODEL [LAYER...]`` (an image model's units
with their evidence, a language model's heads (and, for mlp-1l, its dictionary's latents and MLP neurons), or
``superposition EXPERIMENT...``'s toy models, into a results store), ``microscope serve STORE`` and
``microscope export STORE OUT``."""

from __future__ import annotations

from pathlib import Path

import typer

microscope_app = typer.Typer(help="Browse a results store as an atlas of units: serve it locally or export a "
                                  "static site.", no_args_is_help=True)


@microscope_app.command("build")
def build_command(model: str = typer.Argument(..., help="A zoo model (shapes, inceptionv1, attn-only-2l, ...) or "
                                                       "'superposition'."),
                  layers: list[str] = typer.Argument(None, help="An image model's layers (e.g. mixed3a mixed3b); for "
                                                                "superposition, experiments (default intro); a "
                                                                "language model takes none (all its heads)."),
                  all_layers: bool = typer.Option(False, "--all-layers", help="An image model: every main layer "
                                                  "with spatial maps (no pre-ReLU taps, branches or pooling), as "
                                                  "`mechscope layers MODEL` lists them; the unit counts are "
                                                  "printed first."),
                  out: Path = typer.Option(Path("out/microscope"), help="The results store to add to."),
                  units: int = typer.Option(None, help="Units per layer (default: all)."),
                  steps: int = typer.Option(128, help="Feature-visualization steps."),
                  upstream: list[str] = typer.Option([], help="LAYER=SOURCE: link LAYER's units to their strongest "
                                                         "units of SOURCE (repeat the option)."),
                  k: int = typer.Option(4, help="Upstream units kept per unit."),
                  dataset: str = typer.Option(None, help="Dataset examples, statistics and the top example's "
                                                         "attribution from this dataset: a folder of images or "
                                                         "shapes:N[:SEED]."),
                  examples_k: int = typer.Option(8, help="Top and bottom dataset examples per unit."),
                  diversity: int = typer.Option(0, help="Images per unit in a diversity set (0: none)."),
                  feature_use: int = typer.Option(0, help="Shapes-world organisms: ablate each unit alone and record "
                                                          "what it costs each task on this many held-out images "
                                                          "(0: not)."),
                  partners: str = typer.Option(None, help="Another zoo network (e.g. shapes-seed1, or "
                                                          "shapes-vgg:conv3_2 for a layer of another name): link "
                                                          "each unit to its most correlated units there."),
                  ray: str = typer.Option(None, "--ray", envvar="RAY_ADDRESS",
                                          help="Compute an image model's units on the Ray cluster at this address "
                                               "(HOST:PORT, ray://HOST:PORT or 'auto'; needs the ray extra); "
                                               "default: in this process."),
                  device: str = typer.Option(None, help="Image models: cpu, cuda or cuda:N (default: the CPU); on a "
                                                        "Ray cluster each task runs there when its worker has it, "
                                                        "else on the CPU."),
                  amp: bool = typer.Option(False, "--amp", help="Image models: feature visualizations and dataset "
                                                                "scans in bfloat16 autocast on CUDA; no effect on "
                                                                "the CPU."),
                  text: str = typer.Option(None, help="Language models: the sample text of the attention patterns."),
                  latents: int = typer.Option(None, help="Language models with a bundled dictionary (mlp-1l): "
                                                         "pages for N of its latents, spread over their density "
                                                         "(default: all; 0: no latent or MLP neuron pages)."),
                  toy_steps: int = typer.Option(None, help="superposition: training steps (default: the "
                                                           "experiment's own)."),
                  weights: str = typer.Option("bundled", help="bundled | random | download | a weights file.")) -> None:
    """Compute the evidence of LAYERS' units (a language model's heads, a toy experiment's instances) into OUT;
    units already built with the same settings are skipped."""
    from mechscope.compute.engine import engine
    from mechscope.devices import AMP_ON_CPU, checked_device
    from mechscope.errors import MechscopeError
    from mechscope.microscope.models import build_model
    from mechscope.microscope.options import Evidence, FeatureUse, Partners

    if device is not None or amp:
        placed = checked_device(device or "cpu")   # before any work: a clear error for a wrong or absent device
        if amp and placed.type != "cuda":
            typer.echo(AMP_ON_CPU, err=True)
    pairs = dict(u.split("=", 1) for u in upstream if "=" in u)
    if len(pairs) != len(upstream):
        raise MechscopeError(f"--upstream takes LAYER=SOURCE, e.g. mixed3b=mixed3a; got {upstream}")
    if all_layers:
        from mechscope.zoo.listing import atlas_layers

        if layers:
            raise MechscopeError(f"give LAYERS or --all-layers, not both (got {layers})")
        widths = atlas_layers(model)
        layers = list(widths)
        counts = {layer: width if units is None else min(width, units) for layer, width in widths.items()}
        typer.echo(f"{model}: {len(counts)} layers, {sum(counts.values())} units: "
                   + ", ".join(f"{layer} {n}" for layer, n in counts.items()))
    other, _, other_layer = (partners or "").partition(":")
    built = build_model(model, layers or [], out, weights=weights, units_per_layer=units,
                        evidence=Evidence(steps=steps, diversity=diversity), upstream=pairs, k=k, dataset=dataset,
                        examples_k=examples_k, engine=engine(ray) if ray else None, text=text, toy_steps=toy_steps,
                        feature_use=FeatureUse(images=feature_use) if feature_use else None,
                        partners=Partners(other, layer=other_layer or None) if other else None, device=device,
                        amp=amp, latents=latents)
    typer.echo(built.describe())
    typer.echo(f"store {out} (browse: mechscope microscope serve {out})")


@microscope_app.command("serve")
def serve(store: Path = typer.Argument(..., help="A results folder (index.sqlite + png/)."),
          port: int = typer.Option(8000, help="Port (0: any free one)."),
          host: str = typer.Option("127.0.0.1", help="Address to bind; the default is this machine only.")) -> None:
    """Serve STORE's pages at http://HOST:PORT/ until interrupted."""
    from mechscope.microscope.serve import serve as serve_store

    serve_store(store, host=host, port=port,
                announce=lambda url: typer.echo(f"Microscope of {store} at {url} (Ctrl-C to stop)"))


@microscope_app.command("export")
def export(store: Path = typer.Argument(..., help="A results folder (index.sqlite + png/)."),
           out: Path = typer.Argument(..., help="Folder for the static site (outside the store).")) -> None:
    """Write STORE's whole site into OUT: open OUT/index.html from file:// or put it on any static host."""
    from mechscope.microscope.site import export as export_site

    counts = export_site(store, out)
    typer.echo(f"wrote {counts['pages']} pages and {counts['pngs']} PNGs ({counts['layers']} layers, "
               f"{counts['units']} units) to {out}; open {out / 'index.html'}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add ``microscope build | serve | export`` to the ``mechscope`` app."""
    app.add_typer(microscope_app, name="microscope")
