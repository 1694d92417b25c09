"""The ``mechscope`` command: parses arguments, calls library functions, prints and saves.  No logic of its own."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import typer

from mechscope.errors import MechscopeError

app = typer.Typer(
    help="mechscope: a microscope for the inside of neural networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the models of the zoo."""
    from mechscope.zoo.registry import cards

    rows = [
        {
            "name": c.name,
            "aliases": list(c.aliases),
            "input": list(c.input_shape) if c.input_kind == "image" else [f"{c.input_shape[0]} tokens"],
            "weights": [w for w, ok in (("bundled", c.bundled), ("download", c.download), ("random", True)) if ok],
            "description": c.description,
        }
        for c in cards()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['name']:<14} {'x'.join(map(str, r['input'])):<11} weights: {', '.join(r['weights']):<26} {r['description']}")


@app.command()
def layers(
    model: str = typer.Argument(..., help="A zoo model name, e.g. inceptionv1."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List a model's layers: name, channels, spatial size at the default input, pre-ReLU / branch flags."""
    from mechscope.capture import layer_shapes
    from mechscope.zoo.registry import get_card, load

    card = get_card(model)
    net = load(card.name, weights="random", device="cpu")
    if card.input_kind == "tokens":   # a language model: its hook points, by path, at n_ctx positions
        import torch

        with torch.no_grad():
            _, cache = net.run_with_cache(torch.zeros(1, card.input_shape[0], dtype=torch.long))
        hooks = [{"name": n, "shape": list(v.shape[1:])} for n, v in cache.items()]
        if as_json:
            typer.echo(json.dumps(hooks, indent=2))
            return
        typer.echo(f"{'hook point':<36} shape (without batch; {card.input_shape[0]} positions)")
        for h in hooks:
            typer.echo(f"{h['name']:<36} {'x'.join(map(str, h['shape']))}")
        return
    shapes = layer_shapes(net, card.input_shape)
    rows = [
        {
            "name": name,
            "channels": info.channels,
            "spatial": list(shapes[name][1:]),
            "pre_relu": info.pre_relu,
            "branch": info.branch,
            "module": info.path,
        }
        for name, info in net.layer_table.items()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'layer':<32} {'channels':>8}  {'spatial':<9} flags")
    for r in rows:
        flags = " ".join(f for f, on in (("pre_relu", r["pre_relu"]), ("branch", r["branch"])) if on)
        typer.echo(f"{r['name']:<32} {r['channels']:>8}  {'x'.join(map(str, r['spatial'])) or '-':<9} {flags}")


@app.command()
def vis(
    model: str = typer.Argument(..., help="A zoo model name, e.g. inceptionv1."),
    units: list[str] = typer.Argument(..., help="Units to visualize, e.g. mixed3b:379 mixed4a:476@7,7."),
    weights: str = typer.Option("bundled", help="bundled | random | download | a path to a weights file."),
    steps: int = typer.Option(512, help="Optimization steps (Adam, lr 0.05)."),
    size: int = typer.Option(128, help="Image size in pixels."),
    seed: int = typer.Option(0, help="Seed for the images and transforms (and random weights)."),
    diversity: int = typer.Option(1, help="Images per unit, pushed apart by the diversity penalty."),
    negative: bool = typer.Option(False, "--negative", help="Also render images that minimize each unit."),
    out: Path = typer.Option(Path("out/vis"), help="Output folder."),
    device: str = typer.Option(None, help="cpu, cuda, cuda:1, ... (default: CUDA when available)."),
) -> None:
    """Feature visualizations of UNITS, optimized together in one batch: OUT/<unit>.png and OUT/<unit>.json."""
    from mechscope.vision.featvis.render import render_units
    from mechscope.zoo.registry import load

    net = load(model, weights=weights, seed=seed, device=device)
    result = render_units(net, units, size=size, steps=steps, seed=seed, diversity=diversity, negative=negative)
    result.settings.update(model=model, weights=weights)
    written = result.save_dir(out)
    for label, act in zip(result.labels, result.activations, strict=True):
        typer.echo(f"{label:<32} final activation {act:.4f}")
    typer.echo(f"wrote {len(written)} files to {out}")


def _scan_to_store(verb: str, model: str, layer_names: list[str], dataset: str, out: Path, *, top_k: int,
                   weights: str, seed: int, batch_size: int, device: str | None, size: int | None,
                   plot_units: int, examples: bool, stats: bool) -> None:
    """The body of ``examples`` and ``stats``: one resumable scan into the store at OUT, then a summary."""
    from mechscope.artefacts import atomic_write_bytes
    from mechscope.data.open import open_dataset
    from mechscope.store import open_store, read_rows
    from mechscope.units import validate
    from mechscope.vision.scan import scan, skipped_summary
    from mechscope.vision.scan_store import save_scan
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


@app.command()
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


@app.command()
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


train_app = typer.Typer(help="Train the organisms we ship (seeded, resumable, progress bar).", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("shapes")
def train_shapes_command(
    out: Path = typer.Option(Path("out/train/shapes"), help="Folder for the checkpoint, weights and card."),
    steps: int = typer.Option(None, help="Training steps (default: the recipe's)."),
    batch_size: int = typer.Option(None, help="Images per step (default: the recipe's)."),
    seed: int = typer.Option(0, help="Seed of the world and the initialisation."),
    threads: int = typer.Option(None, help="torch CPU threads (default: the recipe's)."),
    tasks: str = typer.Option("shape,curve,boundary,colour", help="Heads to train (an ablation trains fewer)."),
    census_every: int = typer.Option(200, help="Count curve detectors in mixed3a/mixed3b every N steps (0: off)."),
    census_orientations: int = typer.Option(720, help="Orientations of the final census (720 = 0.5 deg steps)."),
    eval_items: int = typer.Option(None, help="Held-out images for the accuracies (default: the recipe's)."),
) -> None:
    """Train the shapes organism: OUT/shapes.safetensors + OUT/shapes.json (accuracy, curve-detector census).
    Rerunning with the same settings resumes from OUT/checkpoint.pt."""
    from dataclasses import replace

    from mechscope.artefacts import atomic_write_bytes
    from mechscope.vision.tuning import curve_detector_census
    from mechscope.zoo.organisms.shapes_recipe import CARD_FILE, WEIGHTS_FILE, ShapesRecipe, train_shapes
    from mechscope.zoo.registry import load

    recipe = ShapesRecipe(seed=seed, tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()))
    changes = {k: v for k, v in (("steps", steps), ("batch_size", batch_size), ("threads", threads),
                                                  ("eval_items", eval_items)) if v}
    recipe = replace(recipe, **changes)
    layers = ["mixed3a", "mixed3b"]

    def census(step: int, model) -> None:
        if census_every and step % census_every == 0:
            model.eval()
            found = curve_detector_census(model, layers, size=recipe.size,
                                          n_orientations=min(72, census_orientations))
            row = {"step": step, **{k: {f: v[f] for f in ("units", "curve_detectors", "coverage_of_8_sectors")}
                                    for k, v in found.items()}}
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "census.jsonl", "a") as f:   # kept across interruptions; read back at the end
                f.write(json.dumps(row) + "\n")
            typer.echo(f"\nstep {step}: " + ", ".join(
                f"{k} {v['curve_detectors']} curve detectors covering {v['coverage_of_8_sectors']}/8 sectors"
                for k, v in found.items()))

    card = train_shapes(out, recipe, on_step=census)
    net = load("shapes", weights=out / WEIGHTS_FILE, device="cpu")
    card["curve_detector_census"] = curve_detector_census(net, layers, size=recipe.size,
                                                          n_orientations=census_orientations)
    card["curve_detector_census_strict"] = {
        k: {f: v[f] for f in ("units", "curve_detectors", "coverage_of_8_sectors", "criteria")}
        for k, v in curve_detector_census(net, layers, size=recipe.size, n_orientations=census_orientations,
                                          min_preference=2.0, max_width=90.0).items()}
    untrained = load("shapes", weights="random", seed=seed, device="cpu")
    card["curve_detector_census_untrained"] = {
        k: {f: v[f] for f in ("units", "curve_detectors", "coverage_of_8_sectors")}
        for k, v in curve_detector_census(untrained, layers, size=recipe.size,
                                          n_orientations=census_orientations).items()}
    rows = {}
    if (out / "census.jsonl").exists():
        for line in (out / "census.jsonl").read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["step"]] = row
    card["census_during_training"] = [rows[k] for k in sorted(rows)]
    atomic_write_bytes(out / CARD_FILE, (json.dumps(card, indent=2) + "\n").encode())
    typer.echo("held-out accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in card["accuracy"].items()))
    for layer, c in card["curve_detector_census"].items():
        typer.echo(f"{layer}: {c['curve_detectors']} of {c['units']} units are curve detectors, covering "
                   f"{c['coverage_of_8_sectors']}/8 sectors of orientation (untrained: "
                   f"{card['curve_detector_census_untrained'][layer]['curve_detectors']})")
    typer.echo(f"wrote {out / WEIGHTS_FILE} (sha256 {card['sha256']}) and {out / CARD_FILE}")


@app.command()
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
    from mechscope.vision.tuning import curve_detectors, radial_tuning_curve
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


@app.command()
def reproduce(
    claims: list[str] = typer.Argument(None, help="Claim names, or 'all' (default)."),
    out: Path = typer.Option(Path("out/reproduce"), help="Folder for report.md, results.json and figures."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    list_only: bool = typer.Option(False, "--list", help="List the claims and their criteria, run nothing."),
) -> None:
    """Check the papers' claims on the bundled models: numbers, figures, pass/fail against stated criteria."""
    from mechscope.reproduce.claims import run_claims
    from mechscope.reproduce.registry import get_claims

    chosen = get_claims(list(claims or ["all"]))
    if list_only:
        for c in chosen:
            typer.echo(f"{c.name:<26} {c.statement}\n{'':<26} criterion: {c.criterion}")
        return
    rows = run_claims(chosen, out, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        typer.echo(f"{sum(r['passed'] for r in rows)} of {len(rows)} claims pass; wrote {out / 'report.md'}")


from mechscope.cli_analyses import register as _register_analyses  # noqa: E402
from mechscope.cli_microscope import register as _register_microscope  # noqa: E402
from mechscope.cli_superposition import register as _register_superposition  # noqa: E402
from mechscope.cli_transformer import register as _register_transformer  # noqa: E402

_register_analyses(app)
_register_transformer(app, train_app)
_register_superposition(app)
_register_microscope(app)


def main() -> None:
    """Console entry point: a ``MechscopeError`` is one line on stderr and exit status 1, not a traceback."""
    try:
        app()
    except MechscopeError as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
