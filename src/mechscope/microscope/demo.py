"""The Microscope of the bundled organisms, as ``make demo`` builds it: one store with

* every unit of the vision organism's ``WHOLE_LAYERS`` (``mixed3a``: 128 units) with its feature visualization
  and negative, radial tuning curve, dataset examples, statistics, distribution plot and quilt (a whole layer's
  grid, as OpenAI Microscope showed it; links and attributions only for the circuit's units, below);
* the vision organism ``shapes``, walked along its curve-detector circuit: the curve detectors of ``mixed3b``,
  the ``mixed3a`` units that feed them most strongly, and the ``conv2d2`` units that feed those.  Each unit gets
  its feature visualization and negative, radial tuning curve, dataset examples, statistics, distribution plot
  and quilt, upstream / downstream links, the attribution of its top example to the layer below, what ablating it
  alone costs each of the world's tasks (feature use) and its most correlated units in ``shapes-seed1``
  (universality);
* both attention-only organisms' heads (``attn-only-1l``, ``attn-only-2l``): attention on sample text, detector
  scores, top QK/OV token pairs, composition;
* the MLP organism ``mlp-1l`` and its dictionary ``mlp-1l-sae`` (``microscope.features``): ``FEATURES`` (300) live
  latents spread evenly over their density ranking (``features.spread_by_density``: from the most to the least
  frequent, so common and rare features both show) and all 512 neurons of ``blocks.0.mlp.hook_post``, from the
  bundled held-out sample (256 rows of 128 tokens); ``mechscope microscope build mlp-1l`` builds every latent;
* the superposition ``intro`` experiment (n = 5 features in m = 2 dimensions over ten sparsities);
* the image–text organism ``shapes-clip``: the ``MULTIMODAL_UNITS`` most multimodal units of ``mixed4b`` (its last
  conv layer) and ``image_embed`` (the joint space, where most of its multimodal units are), each with its
  modality table, strongest concept per modality, text-side captions and typographic attack, the best two per
  layer with faceted visualizations (``microscope.multimodal``, ``DEMO_MULTIMODAL``).

The other units of the circuit's layers have pages too (a layer row names all its channels), empty until built
(``mechscope microscope build shapes mixed3b ...`` fills them; the grid shows built units first).  Each part is
incremental, so a second run only checks the store.  Example (a small, fast version)::

    >>> import tempfile
    >>> store = tempfile.mkdtemp()
    >>> small = dict(steps=2, images=16, focus=[45], k=1, toy_steps=20, progress=False, whole=(),
    ...              feature_use=FeatureUse(images=20), partners=Partners("shapes-seed1", images=4),
    ...              multimodal=MultimodalPages(per_cell=1, facet_units=0, attack_examples=1), multimodal_units=1,
    ...              features=3, feature_rows=16)
    >>> counts = build_demo(store, **small)
    >>> counts["shapes:mixed3b"], counts["shapes:mixed3a"], counts["shapes:conv2d2"]
    ({'built': 1, 'skipped': 0}, {'built': 1, 'skipped': 0}, {'built': 1, 'skipped': 0})
    >>> counts["attn-only-2l"], counts["superposition:intro"], counts["shapes-clip"]
    ({'built': 8, 'skipped': 0}, {'built': 10, 'skipped': 0}, {'built': 2, 'skipped': 0})
    >>> counts["mlp-1l-sae"], counts["mlp-1l:blocks.0.mlp.hook_post"]
    ({'built': 3, 'skipped': 0}, {'built': 512, 'skipped': 0})
    >>> sorted({c["built"] for c in build_demo(store, **small).values()})   # again: nothing to do
    [0]
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from mechscope.compute.engine import Engine
from mechscope.data.shapes import ShapesDataset
from mechscope.microscope.build import build
from mechscope.microscope.heads import build_heads
from mechscope.microscope.kinds import UPSTREAM
from mechscope.microscope.multimodal import MultimodalPages, build_multimodal
from mechscope.microscope.options import DatasetEvidence, Evidence, FeatureUse, Links, Partners
from mechscope.microscope.toy import build_toy
from mechscope.store import Store, open_store, read_rows
from mechscope.units import parse_unit
from mechscope.vision.families.tuning import curve_detectors, radial_tuning_curve
from mechscope.zoo.registry import bundled_tokenizer, load

CIRCUIT = ("mixed3b", "mixed3a", "conv2d2")
"""The vision layers, top down: each one's units are the strongest inputs of the units built above it."""
WHOLE_LAYERS = ("mixed3a",)
"""The vision layers built whole (every unit; the per-unit attribution of links costs a backward pass per unit,
so links stay on the circuit)."""
LANGUAGE_MODELS = ("attn-only-1l", "attn-only-2l")
TOY_EXPERIMENTS = ("intro",)
MULTIMODAL_LAYERS = ("mixed4b", "image_embed")
"""shapes-clip's layers with multimodal units (picture vs word): 1 of 128 in mixed4b and 4 of 64 in image_embed
at 0.25 σ, 10 renderings per cell; mixed4a has none (0 of 112)."""
MULTIMODAL_UNITS = 6
FEATURE_MODEL, FEATURE_DICTIONARY = "mlp-1l", "mlp-1l-sae"
FEATURES = 300
"""Latents of ``mlp-1l-sae`` in the demo (spread over the density ranking); its neurons are all built."""
DEMO_MULTIMODAL = MultimodalPages(facet_units=2, facet_steps=32, facet_layer="mixed4b")


def _linked(store: Store, layer: str, units: Sequence[int]) -> list[int]:
    """The channels that ``units`` of ``layer`` name in their ``upstream`` rows."""
    out: set[int] = set()
    for row in read_rows(store, "figures", model="shapes", layer=layer, kind=UPSTREAM.name):
        if row["channel"] in units:
            out |= {parse_unit(u["unit"]).channel for u in (row["settings"] or {}).get("units", [])}
    return sorted(out)


def build_demo(store_dir: str | os.PathLike, *, steps: int = 64, images: int = 1024, seed: int = 0,
               focus: Sequence[int] | None = None, k: int = 3, engine: Engine | None = None, toy_steps: int | None = None,
               feature_use: FeatureUse | None = FeatureUse(), partners: Partners | None = Partners("shapes-seed1"),
               multimodal: MultimodalPages | None = DEMO_MULTIMODAL, multimodal_units: int = MULTIMODAL_UNITS,
               whole: Sequence[str] = WHOLE_LAYERS, features: int | None = FEATURES, feature_rows: int | None = None,
               device: str | None = None, amp: bool = False,
               progress: bool = True) -> dict[str, dict[str, int]]:
    """Build (or bring up to date) the demo's Microscope in ``store_dir`` -> ``{part: {"built", "skipped"}}``.

    Args:
        steps: feature-visualization steps of the vision units.
        images: items of the shapes world scanned for dataset examples (seed ``seed + 7``).
        focus: the ``mixed3b`` units to start from (default: its curve detectors, ``vision.families.tuning``).
        k: upstream units followed from each unit, layer by layer.
        engine: where the vision units are computed (``mechscope.compute.engine``; default in this process, or
            on the Ray cluster at ``$RAY_ADDRESS``).
        toy_steps: training steps of the toy models (default: the experiment's own, 10,000).
        feature_use, partners: the vision units' ablation and universality evidence (``None``: not).
        multimodal, multimodal_units: what shapes-clip's pages show and how many units per layer (``None``: no
            shapes-clip pages).
        whole: vision layers built whole (part ``shapes:LAYER (all)``): feature visualizations, tuning curves and
            dataset evidence (one pass over the data); the circuit's units of that layer then add their links,
            attribution, feature use and partners.
        features, feature_rows: latents of ``mlp-1l-sae`` (``None``: no feature pages) and rows of the held-out
            sample scanned (default all 256).
        device, amp: where the vision units are computed and their bfloat16 autocast on CUDA
            (``microscope.build.build``); the heads, toy models and shapes-clip pages stay on the CPU (small).
    """
    counts: dict[str, dict[str, int]] = {}
    net = load("shapes", device="cpu")
    if focus is None:
        focus = curve_detectors(radial_tuning_curve(net, CIRCUIT[0], n_orientations=180, progress=False)).units
    data = ShapesDataset(n=images, size=64, seed=seed + 7)
    dataset = DatasetEvidence(data, f"shapes:{images}:{seed + 7}")
    evidence = Evidence(steps=steps, size=64, seed=seed)
    with open_store(store_dir) as store:
        for layer in whole:
            counts[f"shapes:{layer} (all)"] = build(net, "shapes", [layer], store, evidence=evidence, dataset=dataset,
                                                    engine=engine, device=device, amp=amp, progress=progress)
        units = sorted(int(c) for c in focus)
        for layer, below in zip(CIRCUIT, CIRCUIT[1:] + (None,)):
            counts[f"shapes:{layer}"] = build(
                net, "shapes", [layer], store, channels={layer: units},
                evidence=evidence, links=Links({layer: below} if below else {}, k=k), dataset=dataset,
                feature_use=feature_use, partners=partners, engine=engine, device=device, amp=amp,
                progress=progress)
            units = _linked(store, layer, units)
        for name in LANGUAGE_MODELS:
            model = load(name, device="cpu")
            counts[name] = build_heads(model, name, store, tokenizer=bundled_tokenizer(name), progress=progress)
        for experiment in TOY_EXPERIMENTS:
            counts[f"superposition:{experiment}"] = build_toy(store, experiment, steps=toy_steps, progress=progress)
        if features is not None:
            counts.update(_features(store, features, feature_rows, progress))
        if multimodal is not None:
            counts["shapes-clip"] = build_multimodal(load("shapes-clip", device="cpu"), "shapes-clip",
                                                     MULTIMODAL_LAYERS, store, units=multimodal_units,
                                                     options=multimodal, progress=progress)
    return counts


def _features(store: Store, select: int, rows: int | None, progress: bool) -> dict[str, dict[str, int]]:
    from mechscope.microscope.features import build_features
    from mechscope.zoo.dictionaries import get_dictionary, load_dictionary
    from mechscope.zoo.organisms.mlp_sae_recipe import held_out_sample
    from mechscope.zoo.registry import load_language_model

    net, tokenizer = load_language_model(FEATURE_MODEL)
    sae, _ = load_dictionary(FEATURE_DICTIONARY)
    hook = get_dictionary(FEATURE_DICTIONARY).hook
    tokens = held_out_sample()[:rows]
    counts = build_features(store, net, sae, tokens, model_name=FEATURE_MODEL, sae_name=FEATURE_DICTIONARY,
                            hook=hook, tokenizer=tokenizer, select=select, progress=progress)
    return {FEATURE_DICTIONARY: counts["latents"], f"{FEATURE_MODEL}:{hook}": counts["neurons"]}


__all__ = ["build_demo", "FEATURES", "CIRCUIT", "WHOLE_LAYERS", "LANGUAGE_MODELS", "TOY_EXPERIMENTS", "MULTIMODAL_LAYERS", "MULTIMODAL_UNITS",
           "DEMO_MULTIMODAL"]
