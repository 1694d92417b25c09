"""``demo``: the main job on the bundled organisms, ending with their Microscope."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
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
    workers: int = typer.Option(1, help="Microscope: worker processes for the vision units."),
    serve: bool = typer.Option(None, "--serve/--no-serve", help="Serve the Microscope afterwards (default: when "
                                                               "run from a terminal)."),
    port: int = typer.Option(8000, help="Port of the Microscope's server (0: any free one)."),
) -> None:
    """The main job on the bundled organisms: accuracy and curve detectors of the vision organism, then the
    Microscope of all the bundled organisms (vision units with their evidence, attention heads, toy models of
    superposition) built into OUT/microscope, exported to OUT/microscope-site and served at a local URL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mechscope.data.shapes import ShapesDataset
    from mechscope.images import grid, save_png
    from mechscope.vision.featvis.render import render_units
    from mechscope.vision.families.tuning import curve_detectors, radial_tuning_curve
    from mechscope.zoo.organisms.shapes_recipe import HELD_OUT_OFFSET, evaluate
    from mechscope.zoo.registry import bundled_card, load

    models(as_json=False)
    card = bundled_card("shapes")
    net = load("shapes", device="cpu")
    start = time.perf_counter()
    acc = evaluate(net, ShapesDataset(n=500, seed=card["recipe"]["seed"] + HELD_OUT_OFFSET + 1))
    typer.echo(f"\nshapes organism (bundled, sha256 {card['sha256'][:12]}...): accuracy on 500 fresh held-out "
               "images: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items())
               + f"  (card: {', '.join(f'{k} {v:.3f}' for k, v in card['accuracy'].items())})")

    tuning = radial_tuning_curve(net, layer, n_orientations=180, progress=False)
    found = curve_detectors(tuning)
    typer.echo(f"{layer}: {len(found.units)} of {len(tuning.channels)} units are curve detectors, their preferred "
               f"orientations cover {found.coverage(8)}/8 sectors of the circle")
    if found.units:
        # the most sharply tuned detector of each of `detectors` equal sectors of orientation
        best: dict[int, tuple[float, int]] = {}
        for unit, pref, width in zip(found.units, found.preferred, found.width, strict=True):
            sector = int(pref % 360 // (360 / detectors))
            if sector not in best or width < best[sector][0]:
                best[sector] = (width, unit)
        picks = [best[k][1] for k in sorted(best)]
        strict = curve_detectors(tuning, min_preference=2.0, max_width=90.0)
        typer.echo(f"  with stricter criteria (curves >= 2x lines, FWHM <= 90 deg): {len(strict.units)} units, "
                   f"covering {strict.coverage(8)}/8 sectors")
        fig, axes = plt.subplots(1, len(picks), subplot_kw={"projection": "polar"},
                                 figsize=(2.4 * len(picks), 2.8))
        for ax, unit in zip(list(np.atleast_1d(axes)), picks, strict=True):
            tuning.plot(unit, ax=ax)
            ax.set_xticklabels([])
            ax.set_yticklabels([])
        fig.tight_layout()
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / f"shapes_{layer}_radial_tuning.png", dpi=90)
        plt.close(fig)
        names = [f"{layer}:{u}" for u in picks]
        result = render_units(net, names, size=64, steps=steps, seed=seed, progress=False)
        save_png(grid(result.final, ncols=len(names)), out / f"shapes_{layer}_curve_detectors_featvis.png")
        for name in names:
            i = found.units.index(int(name.split(":")[1]))
            ratio = found.curve_preference[i]
            typer.echo(f"  {name:<14} prefers {found.preferred[i]:5.1f} deg, FWHM {found.width[i]:5.1f} deg, "
                       + ("curves/lines " + (f"{ratio:.2g}" if ratio < 1e3 else "inf (no line response)")))
        typer.echo(f"wrote {out / f'shapes_{layer}_radial_tuning.png'} and "
                   f"{out / f'shapes_{layer}_curve_detectors_featvis.png'}")

    from mechscope.microscope.demo import build_demo
    from mechscope.microscope.site import export as export_site

    store, site = out / "microscope", out / "microscope-site"
    typer.echo(f"\nthe Microscope of the bundled organisms, into {store} (units already built are skipped):")
    focus = None  # build_demo finds mixed3b's curve detectors itself
    if layer == "mixed3b" and found.units:  # the ones found above, those shown first
        focus = list(dict.fromkeys(picks + found.units))[:circuit]
    counts = build_demo(store, steps=microscope_steps, images=images, seed=seed, workers=workers, k=k,
                        focus=focus, toy_steps=toy_steps)
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
