"""The ``concept-atlas`` verb of the ``mechscope`` command (registered by ``register``): the NMF atlas of the
multimodal world's concepts over a layer's units and the composite captions decomposed into unit directions
(``vision.multimodal.atlas``), on an image–text model (``shapes-clip``, ``clip-*``).

Writes ``concept_atlas.png`` and ``concept_atlas.json`` to ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from mechscope.cli.multimodal import _WEIGHTS_HELP, _load


def concept_atlas(model: str = typer.Argument(..., help="An image-text model: shapes-clip or clip-*."),
                  layer: str = typer.Option("image_embed", "--layer", help="An image layer, e.g. image_embed."),
                  k: int = typer.Option(4, "--k", help="NMF factors of the atlas."),
                  units: int = typer.Option(3, "--units", help="Unit directions per composite caption."),
                  per_cell: int = typer.Option(10, help="Stimuli per (concept, modality)."),
                  out: Path = typer.Option(Path("concept_atlas"), "--out", help="Folder for the figure and JSON."),
                  weights: Optional[str] = typer.Option(None, help=_WEIGHTS_HELP),
                  seed: int = typer.Option(0, help="Seed of random weights."),
                  as_json: bool = typer.Option(False, "--json", help="Print the JSON instead of a summary.")) -> None:
    """NMF atlas of the twenty concepts (mean σ over pictures and written words) over LAYER's units, and composite
    captions ("a red star") as sparse non-negative sums of the layer's unit directions, with controls."""
    from mechscope.artefacts import atomic_write_json
    from mechscope.data.concepts import CONCEPT_NAMES
    from mechscope.vision.multimodal.atlas import ATLAS_MODALITIES, composite_decomposition, concept_atlas_report
    from mechscope.vision.multimodal.organism import unit_modality_report

    net = _load(model, weights, seed)
    report = unit_modality_report(net, layer, CONCEPT_NAMES, ATLAS_MODALITIES, per_cell=per_cell)
    atlas = concept_atlas_report(net, layer, k=k, report=report)
    comp = composite_decomposition(net, layer=layer, k=units, report=report)
    out.mkdir(parents=True, exist_ok=True)
    atlas.plot(out / "concept_atlas.png")
    d = {"model": model, "atlas": atlas.as_dict(), "composites": comp.as_dict()}
    atomic_write_json(out / "concept_atlas.json", d)
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    typer.echo(f"{model} {layer}: concept atlas, {k} factors, relative error {atlas.atlas.error:.3f}")
    for r in atlas.rows():
        typer.echo(f"  factor {r['factor']}: " + ", ".join(f"{c} {v:.2f}" for c, v in r["top_concepts"]))
    c = comp.as_dict()
    ctrl = ", ".join(f"{n} {v:.3f}" for n, v in c["mean_control_cosine"].items())
    typer.echo(f"composites ({units} units each): mean cosine {c['mean_cosine']:.3f} (controls: {ctrl}); caption "
               f"words named {c['match_rate']:.3f} (random units {c['random_units_match_rate']:.3f})")
    for r in c["captions"]:
        named = "; ".join(f"{layer}:{u} {s.get('picture')}/{s.get('word')}" for u, s in zip(r["units"], r["strongest"]))
        typer.echo(f"  {r['text']!r}: cosine {r['cosine']:.3f}  {named}  matched {r['matched']}")
    typer.echo(f"wrote {out / 'concept_atlas.png'} and {out / 'concept_atlas.json'}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add ``concept-atlas`` to ``app``."""
    app.command("concept-atlas")(concept_atlas)
