"""The ``mechscope`` command (typer): one module per area, each parsing arguments, calling library functions and
printing.  ``main`` is the console entry point (``mechscope``, ``python -m mechscope``).

Modules: ``models`` (models, layers, vis), ``scan`` (examples, stats), ``train`` (train shapes), ``demo``,
``reproduce``, ``analyses`` (tuning, attribution, weights, circuit, families, ablate), ``banding`` (banding, train
banding), ``circles`` (circles), ``polysemantic`` (polysemantic, train shapes-sae), ``transformer`` (heads,
composition, ov, qk, train attn-only), ``features`` (features), ``superposition`` (superposition, sae),
``microscope`` (build, serve, export), ``first_layer`` (first-layer, train branched), ``architectures``
(universality, train shapes-arch), ``geometry`` (tms-geometry), ``shapes_clip`` (train shapes-clip), ``multimodal``
(multimodal, typographic, zeroshot), ``atlas`` (concept-atlas).
"""

from __future__ import annotations

import typer

from mechscope.cli import (analyses, architectures, atlas, banding, circles, demo, features, first_layer,
                           geometry, microscope, models, multimodal, polysemantic, reproduce, scan, shapes_clip,
                           superposition, train, transformer)
from mechscope.errors import MechscopeError

app = typer.Typer(
    help="mechscope: a microscope for the inside of neural networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
train_app = typer.Typer(help="Train the organisms we ship (seeded, resumable, progress bar).", no_args_is_help=True)

models.register(app, train_app)
scan.register(app, train_app)
app.add_typer(train_app, name="train")
train.register(app, train_app)
demo.register(app, train_app)
reproduce.register(app, train_app)
analyses.register(app, train_app)
circles.register(app, train_app)
transformer.register(app, train_app)
features.register(app, train_app)
superposition.register(app, train_app)
microscope.register(app, train_app)
polysemantic.register(app, train_app)
banding.register(app, train_app)
first_layer.register(app, train_app)
architectures.register(app, train_app)
geometry.register(app, train_app)
shapes_clip.register(app, train_app)
multimodal.register(app, train_app)
atlas.register(app, train_app)


def main() -> None:
    """Console entry point: a ``MechscopeError`` is one line on stderr and exit status 1, not a traceback."""
    try:
        app()
    except MechscopeError as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(1) from None
