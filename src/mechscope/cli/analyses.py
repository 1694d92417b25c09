"""The circuits-analysis verbs of the ``mechscope`` command (registered on ``cli.app`` by ``register``):
``tuning``, ``attribution``, ``weights``, ``circuit``, ``families``, ``ablate``.  Each parses, calls the library
(``mechscope.vision.families.reports``, ``mechscope.vision.circuits.reports``,
``mechscope.vision.circuits.feature_use``), saves its result into ``--out`` and prints a summary; no logic of its
own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mechscope.units import parse


def _model_and_size(model: str, weights: str, seed: int) -> tuple[Any, int]:
    from mechscope.zoo.registry import get_card, load

    card = get_card(model)
    return load(card.name, weights=weights, seed=seed, device="cpu"), int(card.input_shape[-1])


WEIGHTS = typer.Option("bundled", help="bundled | random | download | a path to a weights file.")
OUT = typer.Option(Path("out/analyses"), help="Output folder.")


def tuning(model: str = typer.Argument(..., help="A zoo model name."),
           targets: list[str] = typer.Argument(..., metavar="UNIT_OR_LAYER...",
                                               help="Units (mixed3b:45) for their tuning curves, or layers "
                                                    "(mixed3b) to rank every unit as a curve, high-low or line "
                                                    "detector."),
           orientations: int = typer.Option(720, help="Orientations over 360 degrees."),
           rotated: int = typer.Option(0, help="Also turn each unit's top K centred dataset examples through "
                                       "360 deg (1 deg steps), recording every listed unit of its layer."),
           dataset: str = typer.Option("shapes:2048", help="Images for --rotated: a folder or shapes:N[:SEED]."),
           stats: Path = typer.Option(None, help="The folder `mechscope stats` wrote: responses also in sigma."),
           weights: str = WEIGHTS, seed: int = typer.Option(0, help="Seed of random weights."),
           out: Path = OUT) -> None:
    """Radial tuning curves of units (polar plot, orientation x curvature map, JSON) or detector finders over
    whole layers; rotated dataset examples with --rotated."""
    from mechscope.units import Unit
    from mechscope.vision.families.reports import layer_detectors, rotated_examples, stored_moments, unit_tuning

    net, size = _model_and_size(model, weights, seed)
    units = [t for t in targets if isinstance(parse(t), Unit)]
    for target in targets:
        if target in units:
            unit = parse(target)
            moments = stored_moments(stats, model, unit.layer, unit.channel) if stats is not None else None
            t = unit_tuning(net, target, size=size, n_orientations=orientations, moments=moments)
            t.save(out)
            row = t.row
            note = f", peak {row['peak_sigma']:.1f} sigma above the dataset mean" if "peak_sigma" in row else ""
            typer.echo(f"{target}: prefers {row['preferred_deg']:.1f} deg, curves/lines {row['curve_preference']:.3g}, "
                       f"FWHM {row['fwhm_deg']:.0f} deg{note}")
        else:
            found = layer_detectors(net, parse(target).layer, size=size, n_orientations=orientations)
            found.save(out)
            typer.echo(f"{found.layer}: " + ", ".join(f"{v} {k}" for k, v in found.counts.items()))
    if rotated and units:
        from mechscope.data.open import open_dataset

        data = open_dataset(dataset, size)
        by_layer: dict[str, list[int]] = {}
        for u in units:
            unit = parse(u)
            by_layer.setdefault(unit.layer, []).append(unit.channel)
        for layer, channels in by_layer.items():
            for r in rotated_examples(net, layer, channels, data.batches(256), rotated, about={"dataset": dataset}):
                r.save(out)
                typer.echo(f"{layer}:{r.channel} examples rotated: each unit peaks at " +
                           ", ".join(f"{u} {p:.0f} deg" for u, p in r.peaks.items()))
    typer.echo(f"wrote {out}")


def attribution(model: str = typer.Argument(..., help="A zoo model name."),
                unit: str = typer.Argument(..., help="The unit, e.g. mixed3b:45 or mixed3b:45@8,8."),
                source: str = typer.Argument(..., help="An earlier layer, e.g. mixed3a."),
                dataset: str = typer.Option("shapes:16", help="A folder of images, or shapes:N[:SEED]."),
                index: int = typer.Option(0, help="Which dataset item."),
                top: int = typer.Option(10, help="Top contributors to list."),
                weights: str = WEIGHTS, seed: int = typer.Option(0, help="Seed of random weights."),
                out: Path = OUT) -> None:
    """Attribute UNIT's activation on one image to SOURCE's channels and positions (activation x gradient)."""
    from mechscope.data.open import open_dataset
    from mechscope.vision.circuits.reports import attribution_report

    net, size = _model_and_size(model, weights, seed)
    _, image = next(iter(open_dataset(dataset, size).batches(1, start=index)))
    report = attribution_report(net, unit, source, image, top=top, about={"dataset": dataset, "index": index})
    report.save(out)
    p = report.payload
    typer.echo(f"{unit} = {p['value']:.4g} on item {index}; top: "
               + ", ".join(f"{r['unit']} {r['contribution']:+.3g}" for r in p["top"][:5]))


def weights_command(model: str = typer.Argument(..., help="A zoo model name."),
                    source: str = typer.Argument(..., help="The earlier layer, e.g. mixed3a."),
                    unit: str = typer.Argument(..., help="The later unit, e.g. mixed3b:100."),
                    nmf: int = typer.Option(3, help="One-sided NMF factors shown as RGB (0: none)."),
                    weights: str = WEIGHTS, seed: int = typer.Option(0, help="Seed of random weights."),
                    out: Path = OUT) -> None:
    """Expanded weights from SOURCE to UNIT (through bottlenecks, linearized model): heatmaps, NMF, JSON."""
    from mechscope.vision.circuits.reports import weights_report

    net, size = _model_and_size(model, weights, seed)
    report = weights_report(net, source, unit, size, nmf=nmf)
    report.save(out)
    typer.echo(f"expanded weights {source} -> {unit}: {list(report.weights.shape)}; strongest " +
               ", ".join(f"{source}:{c}" for c in report.strongest[:5]))


def circuit(model: str = typer.Argument(..., help="A zoo model name."),
            unit: str = typer.Argument(..., help="The unit at the top, e.g. mixed3b:45."),
            layers: list[str] = typer.Option(..., "--layer", help="Layers below, in order (repeat the option)."),
            k: int = typer.Option(3, help="Upstream units kept per node."),
            featvis: bool = typer.Option(True, help="Draw feature visualizations in the nodes."),
            steps: int = typer.Option(64, help="Feature-visualization steps."),
            weights: str = WEIGHTS, seed: int = typer.Option(0, help="Seed of random weights."),
            out: Path = OUT) -> None:
    """The circuit feeding UNIT: strongest upstream units by expanded weight, recursively (JSON + picture)."""
    from mechscope.vision.circuits.graph import circuit_graph
    from mechscope.artefacts import atomic_write_json
    from mechscope.units import file_stem

    net, size = _model_and_size(model, weights, seed)
    graph = circuit_graph(net, unit, layers, size, k=k)
    atomic_write_json(out / f"{file_stem(unit)}_circuit.json", graph.to_json())
    graph.draw(out / f"{file_stem(unit)}_circuit.png", featvis=featvis, steps=steps)
    typer.echo(f"circuit of {unit}: {len(graph.to_json()['nodes'])} units; wrote {out}")


def families_command(model: str = typer.Argument(..., help="A zoo model name."),
                     layer: str = typer.Argument(..., help="The layer, e.g. mixed3b."),
                     by: str = typer.Option("tuning", help="tuning: curve detectors whose radial tuning curves "
                                            "are shifted copies; weights: kernels that are rotated copies (for a "
                                            "layer whose inputs do not rotate, e.g. the first conv)."),
                     threshold: float = typer.Option(0.8, help="Score (shifted correlation or rotated cosine) "
                                                     "that links two units into one family."),
                     orientations: int = typer.Option(180, help="Orientations over 360 degrees (--by tuning)."),
                     angles: int = typer.Option(8, help="Rotations tried over 360 degrees (--by weights)."),
                     branches: bool = typer.Option(False, help="Also count colour units and curve detectors per "
                                                   "branch of an inception block, with hypergeometric p-values."),
                     compare: str = typer.Option("", help="Another zoo model (e.g. shapes-seed1): match LAYER's "
                                                 "units by activation correlation (universality)."),
                     images: int = typer.Option(512, help="Shapes-world images for --compare."),
                     weights: str = WEIGHTS, seed: int = typer.Option(0, help="Seed of random weights."),
                     out: Path = OUT) -> None:
    """Families of LAYER's units (rotation-equivariant copies), optionally branch specialization and
    universality against another model (JSON + pictures)."""
    from mechscope.vision.families.reports import families_analysis

    net, size = _model_and_size(model, weights, seed)
    other, batches = None, None
    if compare:
        from mechscope.data.shapes import ShapesDataset

        other, _ = _model_and_size(compare, "bundled", 0)
        batches = ShapesDataset(images, size=size).batches(128)
    result = families_analysis(net, parse(layer).layer, by=by, threshold=threshold, n_orientations=orientations,
                               angles=angles, size=size, branches=branches, other=other, other_batches=batches,
                               names=(model, compare))
    written = result.save(out)
    name, fams = result.payload["layer"], result.families
    typer.echo(f"{name}: {len(result.units)} units ({by}) in {len(fams)} families "
               f"(largest {max((len(f) for f in fams), default=0)})")
    if result.branches is not None:
        for kind, split in result.branches.splits.items():
            typer.echo(f"  {kind}: " + ", ".join(f"{r['branch']} {r['count']}/{r['width']} (p={r['p_value']:.2g})"
                                                 for r in split["branches"]))
    if result.universality is not None:
        typer.echo(f"  universality vs {compare}: {result.universality.payload['share']:.0%} of units matched at "
                   f"r >= {threshold}")
    typer.echo("wrote " + ", ".join(str(p) for p in written))


def ablate(model: str = typer.Argument(..., help="A shapes-world organism of the zoo (shapes, shapes-seed1, ...)."),
           layer: str = typer.Argument(..., help="The layer whose units are ablated (a stage, e.g. mixed3b)."),
           units: str = typer.Option("", help="Comma-separated channels to ablate together, e.g. 20,35,41."),
           curve_detectors: bool = typer.Option(False, "--curve-detectors",
                                                help="Ablate the layer's curve detectors (radial tuning curves)."),
           each: bool = typer.Option(False, "--each", help="Ablate every unit of the layer alone instead."),
           mode: str = typer.Option("zero", help="zero | mean (per-position mean over training-world images)."),
           draws: int = typer.Option(20, help="Random same-size sets of the layer's other units (the control)."),
           images: int = typer.Option(500, help="Held-out images of the organism's world."),
           weights: str = WEIGHTS, seed: int = typer.Option(0, help="Seed of the random sets and random weights."),
           out: Path = OUT) -> None:
    """Feature use: ablate units of LAYER (zero or mean) and measure each task's held-out accuracy drop, against
    random same-size sets of the layer's other units (JSON + PNG); --each ranks every unit ablated alone."""
    from mechscope.errors import MechscopeError
    from mechscope.units import validate
    from mechscope.vision.circuits.feature_use import (save_task_ablations, save_unit_ablation_table,
                                                       shapes_held_out, task_ablation, unit_ablation_table)

    net, _ = _model_and_size(model, weights, seed)
    layer = validate(net, layer).layer
    x, labels = shapes_held_out(model, images)
    if each:
        written = save_unit_ablation_table(unit_ablation_table(net, layer, x, labels, mode=mode), layer, out)
        typer.echo("wrote " + ", ".join(str(p) for p in written))
        return
    if curve_detectors:
        from mechscope.vision.families.tuning import curve_detectors as find, radial_tuning_curve

        chosen = find(radial_tuning_curve(net, layer, n_orientations=180, progress=False)).units
        typer.echo(f"{len(chosen)} curve detectors in {layer}")
    else:
        try:
            chosen = [int(u) for u in units.split(",") if u.strip()]
        except ValueError:
            raise MechscopeError(f"--units takes comma-separated channel numbers, got {units!r}") from None
    if not chosen:
        raise MechscopeError("nothing to ablate: give --units, --curve-detectors or --each")
    result = task_ablation(net, layer, chosen, x, labels, mode=mode, draws=draws, seed=seed)
    for task in result.drop:
        typer.echo(f"  {task}: accuracy {result.baseline[task]:.3f}, drop {result.drop[task]:+.3f}; "
                   f"{result.share_below[task]:.0%} of {draws} random sets drop less (p = {result.p_value[task]:.3f})")
    typer.echo("wrote " + ", ".join(str(p) for p in save_task_ablations([result], out)))


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add the analysis verbs to the ``mechscope`` app."""
    app.command("tuning")(tuning)
    app.command("attribution")(attribution)
    app.command("weights")(weights_command)
    app.command("circuit")(circuit)
    app.command("families")(families_command)
    app.command("ablate")(ablate)
