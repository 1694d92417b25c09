"""The Microscope of the bundled organisms, as ``make demo`` builds it: one store with

* the vision organism ``shapes``: every unit of ``conv2d2``, ``mixed3a`` and ``mixed3b`` (feature visualization
  and its negative, radial tuning curve, dataset examples, statistics, distribution plot and quilt, upstream /
  downstream links along ``conv2d2 → mixed3a → mixed3b`` and the attribution of each unit's top example);
* both attention-only organisms' heads (``attn-only-1l``, ``attn-only-2l``): attention on sample text, detector
  scores, top QK/OV token pairs, composition;
* the superposition ``intro`` experiment (n = 5 features in m = 2 dimensions over ten sparsities).

Each part is incremental, so a second run only checks the store.  Example (a small, fast version)::

    >>> import tempfile
    >>> counts = build_demo(tempfile.mkdtemp(), steps=2, images=16, units=1, toy_steps=20, workers=1,
    ...                     progress=False)
    >>> counts["shapes"], counts["attn-only-2l"], counts["superposition:intro"]
    ({'built': 3, 'skipped': 0}, {'built': 8, 'skipped': 0}, {'built': 10, 'skipped': 0})
"""

from __future__ import annotations

import os

from mechscope.data.shapes import ShapesDataset
from mechscope.microscope.build import build
from mechscope.microscope.heads import build_heads
from mechscope.microscope.toy import build_toy
from mechscope.store import open_store
from mechscope.zoo.registry import bundled_tokenizer, load

VISION_LAYERS = ("conv2d2", "mixed3a", "mixed3b")
UPSTREAM = {"mixed3a": "conv2d2", "mixed3b": "mixed3a"}
LANGUAGE_MODELS = ("attn-only-1l", "attn-only-2l")
TOY_EXPERIMENTS = ("intro",)


def build_demo(store_dir: str | os.PathLike, *, steps: int = 64, images: int = 1024, seed: int = 0,
               workers: int = 2, units: int | None = None, toy_steps: int | None = None,
               progress: bool = True) -> dict[str, dict[str, int]]:
    """Build (or bring up to date) the demo's Microscope in ``store_dir`` -> ``{part: {"built", "skipped"}}``.

    Args:
        steps: feature-visualization steps of the vision units.
        images: items of the shapes world scanned for dataset examples (seed ``seed + 7``).
        workers: worker processes for the vision units.
        units: only the first ``units`` units of each vision layer (default: all).
        toy_steps: training steps of the toy models (default: the experiment's own, 10,000).
    """
    counts: dict[str, dict[str, int]] = {}
    with open_store(store_dir) as store:
        net = load("shapes", device="cpu")
        data = ShapesDataset(n=images, size=64, seed=seed + 7)
        counts["shapes"] = build(net, "shapes", list(VISION_LAYERS), store, units_per_layer=units,
                                 featvis_steps=steps, size=64, upstream_layer=UPSTREAM, seed=seed, dataset=data,
                                 dataset_name=f"shapes:{images}:{seed + 7}", workers=workers, progress=progress)
        for name in LANGUAGE_MODELS:
            model = load(name, device="cpu")
            counts[name] = build_heads(model, name, store, tokenizer=bundled_tokenizer(name), progress=progress)
        for experiment in TOY_EXPERIMENTS:
            counts[f"superposition:{experiment}"] = build_toy(store, experiment, steps=toy_steps, progress=progress)
    return counts


__all__ = ["build_demo", "VISION_LAYERS", "UPSTREAM", "LANGUAGE_MODELS", "TOY_EXPERIMENTS"]
