"""The shapes organism trained with its curve-detector census (``mechscope train shapes``).

``zoo.organisms.shapes_recipe.train_shapes`` trains the organism and writes its card; it may not look into the
model with vision analyses (the zoo is a base layer).  ``train_shapes_with_census`` is the full recipe: it counts
curve detectors of ``mixed3a``/``mixed3b`` every ``census_every`` steps while training (kept in
``OUT/census.jsonl``, so an interrupted run keeps them), and afterwards on the trained model (the default
criteria and strict ones: curves >= 2x lines, FWHM <= 90 deg) and on an untrained model of the same seed, all
recorded in the card.

Example (a few steps, to show the call)::

    >>> import tempfile
    >>> from mechscope.zoo.organisms.shapes_recipe import ShapesRecipe
    >>> from mechscope.vision.families.census import train_shapes_with_census
    >>> with tempfile.TemporaryDirectory() as out:
    ...     card = train_shapes_with_census(out, ShapesRecipe(steps=2, batch_size=4, eval_items=8, threads=1),
    ...                                     census_every=2, census_orientations=8, progress=False)
    >>> [row["step"] for row in card["census_during_training"]], sorted(card["curve_detector_census_untrained"])
    ([2], ['mixed3a', 'mixed3b'])
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from mechscope.artefacts import atomic_write_json
from mechscope.vision.families.tuning import curve_detector_census
from mechscope.zoo.organisms.shapes_recipe import CARD_FILE, WEIGHTS_FILE, ShapesRecipe, train_shapes

CENSUS_LAYERS = ("mixed3a", "mixed3b")
CENSUS_FILE = "census.jsonl"
SUMMARY = ("units", "curve_detectors", "coverage_of_8_sectors")
STRICT = {"min_preference": 2.0, "max_width": 90.0}


def _summary(census: dict[str, dict], fields: Sequence[str] = SUMMARY) -> dict[str, dict]:
    return {layer: {f: v[f] for f in fields} for layer, v in census.items()}


def train_shapes_with_census(out_dir: str | os.PathLike, recipe: ShapesRecipe = ShapesRecipe(), *,
                             census_every: int = 200, census_orientations: int = 720,
                             layers: Sequence[str] = CENSUS_LAYERS, progress: bool = True,
                             on_census: Callable[[int, dict[str, dict]], None] | None = None,
                             device: str | None = None) -> dict[str, Any]:
    """Train the shapes organism into ``out_dir`` (``train_shapes``: resumable) and add the curve-detector census
    to its card: every ``census_every`` steps during training (0: never; at most 72 orientations;
    ``on_census(step, census)`` is called after each), then on the trained model at ``census_orientations``
    orientations (``curve_detector_census``, ``curve_detector_census_strict``) and on the untrained model
    (``curve_detector_census_untrained``); ``census_during_training`` lists the rows by step.  Rewrites
    ``out_dir/shapes.json`` and returns the card.  ``device``: where to train (``train_shapes``); the censuses
    during training run there too, the final ones on the CPU."""
    from mechscope.zoo.registry import load

    out = Path(out_dir)

    def census(step: int, model: nn.Module) -> None:
        if census_every and step % census_every == 0:
            model.eval()
            found = curve_detector_census(model, layers, size=recipe.size,
                                          n_orientations=min(72, census_orientations))
            out.mkdir(parents=True, exist_ok=True)
            with open(out / CENSUS_FILE, "a") as f:   # kept across interruptions; read back at the end
                f.write(json.dumps({"step": step, **_summary(found)}) + "\n")
            if on_census is not None:
                on_census(step, found)

    card = train_shapes(out, recipe, progress=progress, on_step=census, device=device)
    net = load("shapes", weights=out / WEIGHTS_FILE, device="cpu")
    card["curve_detector_census"] = curve_detector_census(net, layers, size=recipe.size,
                                                          n_orientations=census_orientations)
    card["curve_detector_census_strict"] = _summary(
        curve_detector_census(net, layers, size=recipe.size, n_orientations=census_orientations, **STRICT),
        (*SUMMARY, "criteria"))
    untrained = load("shapes", weights="random", seed=recipe.seed, device="cpu")
    card["curve_detector_census_untrained"] = _summary(
        curve_detector_census(untrained, layers, size=recipe.size, n_orientations=census_orientations))
    card["census_during_training"] = read_census_log(out / CENSUS_FILE)
    atomic_write_json(out / CARD_FILE, card)
    return card


def read_census_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``census.jsonl``, one per step (the last row of a step repeated by a resumed run wins),
    in step order; ``[]`` when the file is absent."""
    path = Path(path)
    rows: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["step"]] = row
    return [rows[k] for k in sorted(rows)]
