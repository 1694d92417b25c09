"""The ``circles`` verb of the ``mechscope`` command (registered on ``cli.app`` by ``register``): units of a layer
that read an earlier layer's curve detectors arranged around a circle (``vision.circuits.circle_units``), with
their orientation-shuffled null and ring-vs-arc responses; writes ``<layer>_circles.json`` and ``.png``."""

from __future__ import annotations

from pathlib import Path

import typer


def circles(model: str = typer.Argument(..., help="A zoo model name."),
            layer: str = typer.Argument(..., help="The layer whose units are scored, e.g. mixed4a."),
            detectors_layer: str = typer.Option("mixed3b", help="The layer holding the curve detectors."),
            top: int = typer.Option(8, help="Circle units listed and drawn."),
            draws: int = typer.Option(200, help="Shuffles of the detectors' orientations (the null)."),
            orientations: int = typer.Option(72, help="Orientations of the detectors' radial tuning."),
            weights: str = typer.Option("bundled", help="bundled | random | download | a path to a weights file."),
            seed: int = typer.Option(0, help="Seed of random weights and of the shuffles."),
            out: Path = typer.Option(Path("out/analyses"), help="Output folder.")) -> None:
    """Circle units: the circle score of every unit of LAYER over the expanded weights from the curve detectors
    of --detectors-layer, against shuffled orientations, and responses to rings vs arcs."""
    from mechscope.vision.circuits.circle_units import find_circle_units
    from mechscope.zoo.registry import get_card, load

    card = get_card(model)
    net = load(card.name, weights=weights, seed=seed, device="cpu")
    found = find_circle_units(net, layer, detectors_layer=detectors_layer, size=int(card.input_shape[-1]),
                              n_orientations=orientations, draws=draws, seed=seed)
    s = found.save(out, top)
    typer.echo(f"{s['layer']}: {s['significant']} of {s['units']} units beat the {s['quantile']:.0%} quantile of "
               f"{s['draws']} orientation shuffles of {s['detectors']} {s['detectors_layer']} curve detectors "
               f"({s['expected_by_chance']} expected by chance)")
    for row in s["top"]:
        ratio = row.get("ring_over_best_arc_or_line")
        typer.echo(f"  {row['unit']}: score {row['score']:.3f} (null {row['null_q']:.3f}), sectors "
                   f"{row['coverage_of_8']}/8" + (f", ring/arc {ratio:.2f}" if ratio is not None else ""))
    typer.echo(f"wrote {out}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add the ``circles`` verb to the ``mechscope`` app."""
    app.command("circles")(circles)
