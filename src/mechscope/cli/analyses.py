"""The circuits-analysis verbs of the ``mechscope`` command (registered on ``cli.app`` by ``register``):
``tuning``, ``attribution``, ``weights``, ``circuit``, ``families``.  Each parses, calls library functions and
writes pictures and JSON into ``--out``; no logic of its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mechscope.plots import new_figure as _figure
from mechscope.plots import save_figure as _save_fig
from mechscope.units import parse


def _save_json(payload: Any, path: Path) -> Path:
    from mechscope.artefacts import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())
    return path


def _stem(unit: str) -> str:
    return unit.replace(":", "_").replace("@", "_at_").replace(",", "_")


def _model_and_size(model: str, weights: str, seed: int) -> tuple[Any, int]:
    from mechscope.zoo.registry import get_card, load

    card = get_card(model)
    return load(card.name, weights=weights, seed=seed, device="cpu"), int(card.input_shape[-1])


WEIGHTS = typer.Option("bundled", help="bundled | random | download | a path to a weights file.")
OUT = typer.Option(Path("out/analyses"), help="Output folder.")


def _sigma_of(stats_dir: Path | None, model: str, layer: str, channel: int) -> tuple[float, float] | None:
    """``(mean, std)`` of a unit from the store that ``mechscope stats`` wrote at ``stats_dir``."""
    if stats_dir is None:
        return None
    from mechscope.errors import MechscopeError
    from mechscope.store import open_store, read_rows

    with open_store(stats_dir, create=False) as store:
        rows = read_rows(store, "stats", model=model, layer=layer, channel=channel)
        if not rows:
            have = sorted({(r["model"], r["layer"]) for r in read_rows(store, "stats")})
            raise MechscopeError(f"{stats_dir} holds no statistics of {model} {layer}:{channel}; it has "
                                 f"{have or 'none'} (run `mechscope stats {model} {layer} --out {stats_dir}`)")
    return float(rows[0]["mean"]), float(rows[0]["std"])


def _tuning_unit(net: Any, model: str, unit: str, size: int, orientations: int, stats: Path | None,
                 out: Path) -> dict:
    from mechscope.vision.families.tuning import radial_tuning_curve

    tc = radial_tuning_curve(net, unit, n_orientations=orientations, size=size, progress=False)
    c = tc.channels[0]
    fig, ax = _figure(subplot_kw={"projection": "polar"}, figsize=(3.4, 3.4))
    tc.plot(c, ax=ax)
    _save_fig(fig, out / f"{_stem(unit)}_radial.png")
    fig, ax = _figure(figsize=(5, 2.4))
    tc.plot_curvature(c, ax=ax)
    _save_fig(fig, out / f"{_stem(unit)}_curvature.png")
    row = {"unit": unit, "position": list(tc.position), "preferred_deg": float(tc.preferred[0]),
           "curve_preference": float(tc.curve_preference[0]), "fwhm_deg": float(tc.width[0]),
           "opposite": float(tc.opposite[0]), "orientations": tc.orientations.tolist(),
           "responses": tc.responses[0].tolist(), "lines": tc.lines[0].tolist()}
    moments = _sigma_of(stats, model, tc.layer, c)
    note = ""
    if moments is not None and moments[1] > 0:
        mean, std = moments
        row["responses_sigma"] = ((tc.responses[0] - mean) / std).tolist()
        row["peak_sigma"] = float((tc.responses[0].max() - mean) / std)
        note = f", peak {row['peak_sigma']:.1f} sigma above the dataset mean"
    _save_json(row, out / f"{_stem(unit)}_tuning.json")
    typer.echo(f"{unit}: prefers {row['preferred_deg']:.1f} deg, curves/lines {row['curve_preference']:.3g}, "
               f"FWHM {row['fwhm_deg']:.0f} deg{note}")
    return row


def _tuning_layer(net: Any, layer: str, size: int, orientations: int, out: Path) -> None:
    import math

    from mechscope.vision.families.detectors import classify_units, group_by_orientation, high_low_tuning
    from mechscope.vision.families.tuning import radial_tuning_curve

    tc = radial_tuning_curve(net, layer, n_orientations=orientations, size=size, progress=False)
    rows = classify_units(tc, high_low_tuning(net, layer, size=size))
    kinds = ("curve", "high_low", "line")
    groups = {k: group_by_orientation(rows, k) for k in kinds}
    _save_json({"layer": layer, "units": rows, "by_orientation": groups}, out / f"{layer}_detectors.json")
    fig, ax = _figure(subplot_kw={"projection": "polar"}, figsize=(3.8, 3.8))
    bottom = [0] * 8
    for kind in kinds:
        counts = [len(groups[kind].get(s, [])) for s in range(8)]
        ax.bar([math.radians(45 * s + 22.5) for s in range(8)], counts, width=math.radians(40), bottom=bottom,
               label=kind)
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set_title(f"{layer}: detectors by preferred orientation", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    _save_fig(fig, out / f"{layer}_detectors.png")
    counts = {k: sum(r["kind"] == k for r in rows) for k in (*kinds, "other")}
    typer.echo(f"{layer}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


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

    net, size = _model_and_size(model, weights, seed)
    units = [t for t in targets if isinstance(parse(t), Unit)]
    for target in targets:
        if target in units:
            _tuning_unit(net, model, target, size, orientations, stats, out)
        else:
            _tuning_layer(net, parse(target).layer, size, orientations, out)
    if rotated and units:
        from mechscope.data.open import open_dataset
        from mechscope.vision.families.tuning import centred_top_examples, rotated_tuning

        data = open_dataset(dataset, size)
        by_layer: dict[str, list[int]] = {}
        for u in units:
            unit = parse(u)
            by_layer.setdefault(unit.layer, []).append(unit.channel)
        for layer, channels in by_layer.items():
            tops = centred_top_examples(net, layer, channels, data.batches(256), k=rotated, progress=False)
            for c in channels:
                rt = rotated_tuning(net, layer, tops[c], channels, position="centre", progress=False)
                fig, ax = _figure(figsize=(5, 2.6))
                rt.plot(ax=ax)
                ax.set_title(f"top {rotated} examples of {layer}:{c}, rotated", fontsize=8)
                _save_fig(fig, out / f"{layer}_{c}_rotated.png")
                _save_json({"examples_of": f"{layer}:{c}", "dataset": dataset, "k": rotated,
                            "angles": rt.angles.tolist(),
                            "responses": {f"{layer}:{ch}": rt.responses[i].tolist()
                                          for i, ch in enumerate(rt.channels)}},
                           out / f"{layer}_{c}_rotated.json")
                peak = rt.angles[rt.responses.argmax(1)].tolist()
                typer.echo(f"{layer}:{c} examples rotated: each unit peaks at " +
                           ", ".join(f"{layer}:{ch} {p:.0f} deg" for ch, p in zip(rt.channels, peak)))
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
    from mechscope.vision.circuits.attribution import attribute, attribution_map_plot, top_contributors_plot

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
    from mechscope.vision.circuits.nmf import nmf_rgb
    from mechscope.vision.circuits.weights import expanded_weights, kernel_heatmap

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
    from mechscope.vision.circuits.graph import circuit_graph

    net, size = _model_and_size(model, weights, seed)
    graph = circuit_graph(net, unit, layers, size, k=k)
    _save_json(graph.to_json(), out / f"{_stem(unit)}_circuit.json")
    graph.draw(out / f"{_stem(unit)}_circuit.png", featvis=featvis, steps=steps)
    typer.echo(f"circuit of {unit}: {len(graph.to_json()['nodes'])} units; wrote {out}")


def _score_picture(score: Any, labels: list[str], title: str, path: Path) -> Path:
    fig, ax = _figure(figsize=(6, 5))
    image = ax.imshow(score.numpy(), cmap="viridis", vmin=-1 if float(score.min()) < 0 else 0, vmax=1)
    if len(labels) <= 48:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=5)
        ax.set_yticks(range(len(labels)), labels, fontsize=5)
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _save_fig(fig, path)


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
    from mechscope.errors import MechscopeError
    from mechscope.vision.families import equivariance as eqv
    from mechscope.vision.families.tuning import curve_detectors, radial_tuning_curve

    if by not in ("tuning", "weights"):
        raise MechscopeError(f"--by must be 'tuning' or 'weights', not {by!r}")
    net, size = _model_and_size(model, weights, seed)
    name = parse(layer).layer
    tc = (radial_tuning_curve(net, name, n_orientations=orientations, size=size, progress=False)
          if by == "tuning" or branches else None)
    found = curve_detectors(tc) if tc is not None else None
    if by == "tuning":
        eq = eqv.equivariance_matrix(tc, found.units) if found.units else None
        units, order = found.units, sorted(range(len(found.units)), key=lambda i: found.preferred[i])
        score = eq.score if eq is not None else None
        extra = {"curve_detectors": found.units, "preferred_deg": found.preferred}
    else:
        from mechscope.vision.circuits.weights import layer_kernels

        kernels = layer_kernels(net, name)
        grid = [k * 360.0 / angles for k in range(angles)]
        score, angle = eqv.weight_equivariance_matrix(kernels, grid)
        units = list(range(kernels.shape[0]))
        extra = {"angles_deg": grid, "best_angle_deg": angle.tolist()}
    fams = eqv.families(score, threshold, units) if score is not None else []
    if score is not None and by == "weights":
        order = [units.index(u) for f in fams for u in f]
    payload = {"layer": name, "by": by, "threshold": threshold, "families": fams, **extra}
    written = [_save_json(payload, out / f"{name}_families.json")]
    if score is not None:
        written.append(_score_picture(score[order][:, order], [str(units[i]) for i in order],
                                      f"{name}: {by} equivariance ({len(fams)} families at {threshold})",
                                      out / f"{name}_families.png"))
    typer.echo(f"{name}: {len(units)} units ({by}) in {len(fams)} families "
               f"(largest {max((len(f) for f in fams), default=0)})")
    if branches:
        from mechscope.vision.families.branches import branch_specialization, colour_vs_grey

        colour = colour_vs_grey(net, name, size=size)
        splits = {"colour": branch_specialization(net, name, colour).as_dict(),
                  "curve": branch_specialization(net, name, {c: True for c in found.units}).as_dict()}
        written.append(_save_json(splits, out / f"{name}_branches.json"))
        fig, ax = _figure(figsize=(5, 2.6))
        for k, (kind, split) in enumerate(splits.items()):
            rows = split["branches"]
            ax.bar([i + 0.4 * k for i in range(len(rows))], [r["count"] / max(r["width"], 1) for r in rows],
                   width=0.4, label=kind)
            ax.set_xticks([i + 0.2 for i in range(len(rows))], [r["branch"] for r in rows])
        ax.set_ylabel("share of branch")
        ax.legend(fontsize=7)
        written.append(_save_fig(fig, out / f"{name}_branches.png"))
        for kind, split in splits.items():
            typer.echo(f"  {kind}: " + ", ".join(f"{r['branch']} {r['count']}/{r['width']} (p={r['p_value']:.2g})"
                                                 for r in split["branches"]))
    if compare:
        from mechscope.data.shapes import ShapesDataset
        from mechscope.vision.families.universality import activation_correlation, universality

        other, _ = _model_and_size(compare, "bundled", 0)
        corr = activation_correlation(net, other, name, name, ShapesDataset(images, size=size).batches(128),
                                      progress=False)
        u = universality(corr, threshold)
        written.append(_save_json({"layer": name, "model": model, "other": compare, "threshold": threshold,
                                   "share": u.share, "best_match": u.best_match.tolist(),
                                   "best_corr": [round(float(c), 4) for c in u.best_corr]},
                                  out / f"{name}_universality.json"))
        fig, ax = _figure(figsize=(4, 2.6))
        ax.hist(u.best_corr.numpy(), bins=20, range=(-1, 1))
        ax.axvline(threshold, color="k", lw=0.8)
        ax.set_xlabel(f"best correlation with a unit of {compare}")
        ax.set_title(f"{name}: {u.share:.0%} matched at {threshold}", fontsize=8)
        written.append(_save_fig(fig, out / f"{name}_universality.png"))
        typer.echo(f"  universality vs {compare}: {u.share:.0%} of units matched at r >= {threshold}")
    typer.echo("wrote " + ", ".join(str(p) for p in written))


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add the analysis verbs to the ``mechscope`` app."""
    app.command("tuning")(tuning)
    app.command("attribution")(attribution)
    app.command("weights")(weights_command)
    app.command("circuit")(circuit)
    app.command("families")(families_command)
