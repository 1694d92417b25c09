"""``demo``: the main job on the bundled organisms, ending with their Microscope."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from mechscope.cli.models import models


def demo(
    out: Path = typer.Option(Path("out"), help="Folder for the demo's artefacts."),
    layer: str = typer.Option("mixed3b", help="Layer of the shapes organism to look into."),
    detectors: int = typer.Option(8, help="Curve detectors to show."),
    steps: int = typer.Option(128, help="Feature-visualization steps of the curve detectors shown."),
    images: int = typer.Option(1024, help="Images of the shapes world scanned for dataset examples and stats."),
    seed: int = typer.Option(0, help="Seed of the images and transforms."),
    microscope_steps: int = typer.Option(64, help="Feature-visualization steps of the Microscope's units."),
    circuit: int = typer.Option(None, help="Microscope: start the curve-detector circuit from at most N of mixed3b's "
                                           "curve detectors (default: all of them)."),
    k: int = typer.Option(3, help="Microscope: upstream units followed from each unit."),
    toy_steps: int = typer.Option(None, help="Microscope: training steps of the toy models (default: 10,000)."),
    ray: str = typer.Option(None, "--ray", envvar="RAY_ADDRESS",
                            help="Microscope: compute the vision units on the Ray cluster at this address (HOST:PORT, "
                                 "ray://HOST:PORT or 'auto'; needs the ray extra); default: in this process."),
    whole_layers: str = typer.Option("mixed3a", help="Microscope: shapes layers built whole, every unit "
                                                     "(comma-separated; '' for none)."),
    features: int = typer.Option(300, help="Microscope: latents of mlp-1l-sae with pages, spread over their density "
                                           "(0: no feature or MLP neuron pages)."),
    device: str = typer.Option(None, help="Microscope: cpu, cuda or cuda:N for the vision units (default: the "
                                          "CPU)."),
    amp: bool = typer.Option(False, "--amp", help="Microscope: the vision units' forward passes in bfloat16 "
                                                  "autocast on CUDA; no effect on the CPU."),
    serve: bool = typer.Option(None, "--serve/--no-serve", help="Serve the Microscope afterwards (default: when "
                                                               "run from a terminal)."),
    port: int = typer.Option(8000, help="Port of the Microscope's server (0: any free one)."),
) -> None:
    """The main job on the bundled organisms: accuracy and curve detectors of the vision organism, then the
    Microscope of all the bundled organisms (vision units with their evidence, attention heads, mlp-1l's
    dictionary latents and MLP neurons, toy models of superposition) built into OUT/microscope, exported to
    OUT/microscope-site and served at a local URL."""
    from mechscope.vision.families.showcase import show_curve_detectors
    from mechscope.zoo.organisms.shapes_recipe import fresh_accuracy
    from mechscope.zoo.registry import bundled_card, load

    from mechscope.devices import AMP_ON_CPU, checked_device

    if device is not None or amp:
        placed = checked_device(device or "cpu")   # before any work: a clear error for a wrong or absent device
        if amp and placed.type != "cuda":
            typer.echo(AMP_ON_CPU, err=True)
    models(as_json=False)
    card = bundled_card("shapes")
    net = load("shapes", device="cpu")
    start = time.perf_counter()
    acc = fresh_accuracy(net, card, 500)
    typer.echo(f"\nshapes organism (bundled, sha256 {card['sha256'][:12]}...): accuracy on 500 fresh held-out "
               "images: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items())
               + f"  (card: {', '.join(f'{k} {v:.3f}' for k, v in card['accuracy'].items())})")

    shown = show_curve_detectors(net, layer, out, sectors=detectors, steps=steps, seed=seed)
    found, strict = shown.found, shown.strict
    typer.echo(f"{layer}: {len(found.units)} of {shown.n_units} units are curve detectors, their preferred "
               f"orientations cover {found.coverage(8)}/8 sectors of the circle")
    if found.units:
        typer.echo(f"  with stricter criteria (curves >= 2x lines, FWHM <= 90 deg): {len(strict.units)} units, "
                   f"covering {strict.coverage(8)}/8 sectors")
        for row in shown.rows():
            ratio = row["curve_preference"]
            typer.echo(f"  {row['unit']:<14} prefers {row['preferred_deg']:5.1f} deg, FWHM {row['fwhm_deg']:5.1f} deg, "
                       + ("curves/lines " + (f"{ratio:.2g}" if ratio < 1e3 else "inf (no line response)")))
        typer.echo("wrote " + " and ".join(str(p) for p in shown.files))

    from mechscope.compute.engine import engine
    from mechscope.microscope.demo import build_demo
    from mechscope.microscope.site import export as export_site

    store, site = out / "microscope", out / "microscope-site"
    typer.echo(f"\nthe Microscope of the bundled organisms, into {store} (units already built are skipped):")
    focus = None  # build_demo finds mixed3b's curve detectors itself
    if layer == "mixed3b" and found.units:  # the ones found above, those shown first
        focus = list(dict.fromkeys(shown.picks + found.units))[:circuit]
    counts = build_demo(store, steps=microscope_steps, images=images, seed=seed, engine=engine(ray) if ray else None, k=k,
                        focus=focus, toy_steps=toy_steps,
                        whole=[name.strip() for name in whole_layers.split(",") if name.strip()], device=device,
                        amp=amp, features=features or None)
    for part, c in counts.items():
        typer.echo(f"  {part:<22} built {c['built']:>4}, up to date {c['skipped']:>4}")
    written = export_site(store, site)
    typer.echo(f"exported {written['pages']} pages and {written['pngs']} PNGs to {site} (open {site / 'index.html'})")
    typer.echo(f"demo took {time.perf_counter() - start:.0f} s")
    if serve is None:
        serve = sys.stdin.isatty() and sys.stdout.isatty()
    if not serve:
        typer.echo(f"browse it: mechscope microscope serve {store}   (or: make serve)")
        return
    from mechscope.microscope.serve import serve as serve_store

    serve_store(store, port=port, announce=lambda url: typer.echo(f"Microscope at {url} (Ctrl-C to stop)"))


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add the verbs of this module to the ``mechscope`` app."""
    app.command("demo")(demo)
