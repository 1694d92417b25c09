"""The circuits-analysis verbs of the ``mechscope`` command (registered on ``cli.app`` by ``register``):
``tuning``, ``attribution``, ``weights``, ``circuit``, ``families``.  Each parses, calls library functions and
writes pictures and JSON into ``--out``; no logic of its own."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import typer

from mechscope.units import parse


def _save_fig(fig: Any, path: Path) -> Path:
    from mechscope.artefacts import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _save_json(payload: Any, path: Path) -> Path:
    from mechscope.artefacts import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())
    return path


def _stem(unit: str) -> str:
    return unit.replace(":", "_").replace("@", "_at_").replace(",", "_")


def _figure(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def _model_and_size(model: str, weights: str, seed: int) -> tuple[Any, int]:
    from mechscope.zoo.registry import get_card, load

    card = get_card(model)
    return load(card.name, weights=weights, seed=seed, device="cpu"), int(card.input_shape[-1])


WEIGHTS = typer.Option("bundled", help="bundled | random | download | a path to a weights file.")
OUT = typer.Option(Path("out/analyses"), help="Output folder.")


def tuning(model: str = typer.Argument(..., help="A zoo model name."),
           units: list[str] = typer.Argument(..., help="Units, e.g. mixed3b:45."),
           orientations: int = typer.Option(720, help="Orientations over 360 degrees."),
           weights: str = WEIGHTS, seed: int = typer.Option(0, help="Seed of random weights."),
           out: Path = OUT) -> None:
    """Radial tuning curves of UNITS: polar plot, orientation x curvature map and JSON per unit."""
    from mechscope.vision.tuning import radial_tuning_curve

    net, size = _model_and_size(model, weights, seed)
    for unit in units:
        tc = radial_tuning_curve(net, unit, n_orientations=orientations, size=size, progress=False)
        c = tc.channels[0]
        fig, ax = _figure(subplot_kw={"projection": "polar"}, figsize=(3.4, 3.4))
        tc.plot(c, ax=ax)
        _save_fig(fig, out / f"{_stem(unit)}_radial.png")
        fig, ax = _figure(figsize=(5, 2.4))
        tc.plot_curvature(c, ax=ax)
        _save_fig(fig, out / f"{_stem(unit)}_curvature.png")
        _save_json({"unit": unit, "position": list(tc.position), "preferred_deg": float(tc.preferred[0]),
                    "curve_preference": float(tc.curve_preference[0]), "fwhm_deg": float(tc.width[0]),
                    "opposite": float(tc.opposite[0]), "orientations": tc.orientations.tolist(),
                    "responses": tc.responses[0].tolist(), "lines": tc.lines[0].tolist()},
                   out / f"{_stem(unit)}_tuning.json")
        typer.echo(f"{unit}: prefers {float(tc.preferred[0]):.1f} deg, curves/lines "
                   f"{float(tc.curve_preference[0]):.3g}, FWHM {float(tc.width[0]):.0f} deg")
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
    from mechscope.vision.attribution import attribute, attribution_map_plot, top_contributors_plot

    net, size = _model_and_size(model, weights, seed)
    data = open_dataset(dataset, size)
    _, image = next(iter(data.batches(1, start=index)))
    attr = attribute(net, image, unit, source)
    fig, ax = _figure(figsize=(3.4, 3.4))
    attribution_map_plot(attr, ax=ax)
    _save_fig(fig, out / f"{_stem(unit)}_from_{source}_map.png")
    fig, ax = _figure(figsize=(4, 3))
    top_contributors_plot(attr, k=top, ax=ax)
    _save_fig(fig, out / f"{_stem(unit)}_from_{source}_top.png")
    rows = [{"unit": f"{source}:{c}", "contribution": v} for c, v in attr.top(top)]
    _save_json({"unit": unit, "source": source, "dataset": dataset, "index": index, "value": float(attr.total[0]),
                "top": rows}, out / f"{_stem(unit)}_from_{source}.json")
    typer.echo(f"{unit} = {float(attr.total[0]):.4g} on item {index}; top: "
               + ", ".join(f"{r['unit']} {r['contribution']:+.3g}" for r in rows[:5]))


def weights_command(model: str = typer.Argument(..., help="A zoo model name."),
                    source: str = typer.Argument(..., help="The earlier layer, e.g. mixed3a."),
                    unit: str = typer.Argument(..., help="The later unit, e.g. mixed3b:100."),
                    nmf: int = typer.Option(3, help="One-sided NMF factors shown as RGB (0: none)."),
                    weights: str = WEIGHTS, seed: int = typer.Option(0, help="Seed of random weights."),
                    out: Path = OUT) -> None:
    """Expanded weights from SOURCE to UNIT (through bottlenecks, linearized model): heatmaps, NMF, JSON."""
    from mechscope.images import save_png
    from mechscope.vision.nmf import nmf_rgb
    from mechscope.vision.weights import expanded_weights, kernel_heatmap

    net, size = _model_and_size(model, weights, seed)
    w = expanded_weights(net, source, unit, size)
    strength = w.flatten(1).norm(dim=1)
    order = strength.argsort(descending=True)[:8].tolist()
    fig, ax = _figure(figsize=(1.4 * len(order), 1.8))
    kernel_heatmap(w[order], ax=ax)
    ax.set_title(f"{source} -> {unit}: strongest channels {order}", fontsize=8)
    _save_fig(fig, out / f"{_stem(unit)}_from_{source}_weights.png")
    if nmf:
        save_png(nmf_rgb(w, n=nmf).image, out / f"{_stem(unit)}_from_{source}_nmf.png")
    _save_json({"source": source, "unit": unit, "shape": list(w.shape),
                "strongest": [{"unit": f"{source}:{c}", "norm": float(strength[c])} for c in order]},
               out / f"{_stem(unit)}_from_{source}_weights.json")
    typer.echo(f"expanded weights {source} -> {unit}: {list(w.shape)}; strongest " +
               ", ".join(f"{source}:{c}" for c in order[:5]))


def circuit(model: str = typer.Argument(..., help="A zoo model name."),
            unit: str = typer.Argument(..., help="The unit at the top, e.g. mixed3b:45."),
            layers: list[str] = typer.Option(..., "--layer", help="Layers below, in order (repeat the option)."),
            k: int = typer.Option(3, help="Upstream units kept per node."),
            featvis: bool = typer.Option(True, help="Draw feature visualizations in the nodes."),
            steps: int = typer.Option(64, help="Feature-visualization steps."),
            weights: str = WEIGHTS, seed: int = typer.Option(0, help="Seed of random weights."),
            out: Path = OUT) -> None:
    """The circuit feeding UNIT: strongest upstream units by expanded weight, recursively (JSON + picture)."""
    from mechscope.vision.circuits import circuit_graph

    net, size = _model_and_size(model, weights, seed)
    graph = circuit_graph(net, unit, layers, size, k=k)
    _save_json(graph.to_json(), out / f"{_stem(unit)}_circuit.json")
    graph.draw(out / f"{_stem(unit)}_circuit.png", featvis=featvis, steps=steps)
    typer.echo(f"circuit of {unit}: {len(graph.to_json()['nodes'])} units; wrote {out}")


def families_command(model: str = typer.Argument(..., help="A zoo model name."),
                     layer: str = typer.Argument(..., help="The layer, e.g. mixed3b."),
                     threshold: float = typer.Option(0.8, help="Tuning-curve correlation (after shift) to link."),
                     orientations: int = typer.Option(180, help="Orientations over 360 degrees."),
                     weights: str = WEIGHTS, seed: int = typer.Option(0, help="Seed of random weights."),
                     out: Path = OUT) -> None:
    """Curve-detector families of LAYER: units whose radial tuning curves are rotated copies (JSON)."""
    from mechscope.vision.equivariance import equivariance_matrix
    from mechscope.vision.tuning import curve_detectors, radial_tuning_curve

    net, size = _model_and_size(model, weights, seed)
    name = parse(layer).layer
    tc = radial_tuning_curve(net, name, n_orientations=orientations, size=size, progress=False)
    found = curve_detectors(tc)
    eq = equivariance_matrix(tc, found.units) if found.units else None
    fams = eq.families(threshold) if eq is not None else []
    _save_json({"layer": name, "curve_detectors": found.units, "preferred_deg": found.preferred,
                "threshold": threshold, "families": fams}, out / f"{name}_families.json")
    typer.echo(f"{name}: {len(found.units)} curve detectors in {len(fams)} families "
               f"(largest {max((len(f) for f in fams), default=0)}); wrote {out / f'{name}_families.json'}")


def register(app: typer.Typer) -> None:
    """Add the analysis verbs to the ``mechscope`` app."""
    app.command("tuning")(tuning)
    app.command("attribution")(attribution)
    app.command("weights")(weights_command)
    app.command("circuit")(circuit)
    app.command("families")(families_command)
