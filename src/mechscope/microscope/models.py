"""The Microscope of a model named as on the command line: what ``mechscope microscope build`` does, as a function.

``build_model(name, layers, out_dir, ...)`` picks the builder by what ``name`` is:

* ``"superposition"``: ``layers`` are experiments of ``superposition.experiments`` (default ``intro``), each
  trained and written by ``microscope.toy.build_toy`` (one page per trained instance);
* a zoo language model (``input_kind == "tokens"``): every attention head (``microscope.heads.build_heads``) with
  the model's own tokenizer; it takes no layers.  A model with a bundled dictionary (``zoo.dictionaries``:
  ``mlp-1l`` and ``mlp-1l-sae``) also gets its MLP neuron and dictionary latent pages
  (``microscope.features.build_features``) from the bundled held-out sample: every latent, or ``latents`` of them
  spread over their density ranking (``0``: none);
* a zoo image model: the units of ``layers`` with their evidence (``microscope.build.build``) at the model's input
  size, optionally with circuit links and dataset evidence from a dataset spec (``data.open.open_dataset``).

It returns a ``Built``: the layer kind that was built and the counts per part.

Example::

    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> built = build_model("attn-only-1l", [], out, progress=False)
    >>> built.kind.name, built.counts
    ('heads', {'attn-only-1l': {'built': 4, 'skipped': 0}})
    >>> print(build_model("attn-only-1l", [], out, progress=False).describe())
    attn-only-1l: built 0 heads, skipped 4 already built
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mechscope.compute.engine import Engine
from mechscope.errors import MechscopeError
from mechscope.microscope.kinds import HEADS, LATENTS, NEURONS, TOY, VISION, LayerKind
from mechscope.microscope.options import EXAMPLES_K, DatasetEvidence, Evidence, FeatureUse, Links, Partners
from mechscope.store import Store

SUPERPOSITION = "superposition"
"""The name that builds toy models of superposition instead of a zoo model."""
DEFAULT_EXPERIMENTS = ("intro",)


@dataclass(frozen=True)
class Built:
    """What ``build_model`` did: the kind of layers built and ``{part: {"built", "skipped"}}`` (a part is the model,
    or ``superposition:<experiment>``)."""

    kind: LayerKind
    counts: dict[str, dict[str, int]]
    nouns: dict[str, str] = field(default_factory=dict)   # a part whose units are not ``kind.noun``s

    def describe(self) -> str:
        """One line per part, e.g. ``shapes: built 4 units, skipped 0 already built``."""
        return "\n".join(f"{part}: built {c['built']} {self.nouns.get(part, self.kind.noun)}s, skipped "
                         f"{c['skipped']} already built" for part, c in self.counts.items())


@dataclass(frozen=True)
class _Request:
    name: str
    layers: list[str]
    out: str | os.PathLike | Store
    weights: str
    units_per_layer: int | None
    evidence: Evidence
    links: Links
    dataset: str | None
    examples_k: int
    engine: Engine | None
    text: str | None
    toy_steps: int | None
    progress: bool
    feature_use: FeatureUse | None = None
    partners: Partners | None = None
    device: str | None = None
    amp: bool = False
    latents: int | None = None


def build_model(name: str, layers: Sequence[str] = (), out_dir: str | os.PathLike | Store = "out/microscope", *,
                weights: str = "bundled", units_per_layer: int | None = None, evidence: Evidence = Evidence(),
                upstream: Mapping[str, str] | None = None, k: int = 4, dataset: str | None = None,
                examples_k: int = EXAMPLES_K, engine: Engine | None = None, text: str | None = None, toy_steps: int | None = None,
                feature_use: FeatureUse | None = None, partners: Partners | None = None,
                device: str | None = None, amp: bool = False, latents: int | None = None,
                progress: bool = True) -> Built:
    """Build (or bring up to date) the Microscope of ``name`` in the store ``out_dir`` (see the module docstring).

    Args:
        name: a zoo model (``shapes``, ``inceptionv1``, ``attn-only-2l``, ...) or ``"superposition"``.
        layers: an image model's layers; for ``"superposition"``, experiments (default ``intro``); a language
            model takes none.
        out_dir: the store folder (created if need be), or an open ``Store``.
        weights: ``bundled | random | download |`` a weights file (zoo models).
        units_per_layer: image models: the first ``n`` units of each layer (default all).
        evidence: image models: the per-unit figures (``size`` default: the model's input size).
        upstream, k: image models: ``{layer: earlier_layer}`` links and upstream units kept per unit.
        dataset: image models: a dataset spec (a folder of images or ``shapes:N[:SEED]``) for dataset examples,
            statistics and the top example's attribution; ``examples_k`` top and bottom examples per unit.
        engine: image models: where the units are computed (``mechscope.compute.engine``; default in this
            process, or on the Ray cluster at ``$RAY_ADDRESS``).
        feature_use: shapes-world organisms: what ablating each unit alone costs each task (``ablation`` figures).
        partners: image models: each unit's most correlated units of the same layer of another zoo network.
        device, amp: image models: where the units are computed (``cpu``, ``cuda``, ``cuda:N``; default: CPU) and
            bfloat16 autocast of their forward passes on CUDA (``microscope.build.build``).  Checked before any work.
        text: language models: the sample text of the attention patterns.
        latents: language models with a bundled dictionary: how many of its latents get pages (spread over their
            density ranking; default all, ``0``: no feature or neuron pages).
        toy_steps: ``"superposition"``: training steps (default: the experiment's own).
        progress: show progress bars.
    """
    request = _Request(name, list(layers or ()), out_dir, weights, units_per_layer, evidence,
                       Links(dict(upstream or {}), k), dataset, examples_k, engine, text, toy_steps, progress,
                       feature_use, partners, device, amp, latents)
    if latents is not None and (isinstance(latents, bool) or not isinstance(latents, int) or latents < 0):
        raise MechscopeError(f"latents is how many dictionary latents get pages, an integer >= 0 (got {latents!r}); "
                             "leave it None for all")
    if device is not None:
        from mechscope.devices import checked_device

        checked_device(device)   # a clear error before any model is loaded or trained
    if name == SUPERPOSITION:
        return _toy(request)
    from mechscope.zoo.registry import get_card

    card = get_card(name)
    builder = _BY_INPUT.get(card.input_kind)
    if builder is None:
        raise MechscopeError(f"the Microscope builds image models, language models and {SUPERPOSITION!r}; "
                             f"{card.name} takes {card.input_kind!r} inputs")
    return builder(replace(request, name=card.name), card)


def _toy(request: _Request) -> Built:
    from mechscope.microscope.toy import build_toy

    counts = {f"{SUPERPOSITION}:{experiment}": build_toy(request.out, experiment, steps=request.toy_steps,
                                                         progress=request.progress)
              for experiment in request.layers or DEFAULT_EXPERIMENTS}
    return Built(TOY, counts)


def _heads(request: _Request, card: Any) -> Built:
    from mechscope.microscope.heads import build_heads
    from mechscope.zoo.registry import load_language_model

    if request.layers:
        raise MechscopeError(f"{card.name} is a language model: its Microscope has every head, so it takes no "
                             f"layers (got {request.layers})")
    net, tokenizer = load_language_model(card.name, request.weights)
    counts = {card.name: build_heads(net, card.name, request.out, tokenizer=tokenizer, text=request.text,
                                     progress=request.progress)}
    nouns: dict[str, str] = {}
    from mechscope.zoo.dictionaries import dictionary_names, get_dictionary, load_dictionary

    for name in dictionary_names() if request.latents != 0 else ():
        row = get_dictionary(name)
        if row.model != card.name:
            continue
        from mechscope.microscope.features import build_features
        from mechscope.zoo.organisms.mlp_sae_recipe import held_out_sample

        sae, _ = load_dictionary(name)
        built = build_features(request.out, net, sae, held_out_sample(), model_name=card.name, sae_name=name,
                               hook=row.hook, tokenizer=tokenizer, select=request.latents,
                               progress=request.progress)
        counts[name], counts[f"{card.name}:{row.hook}"] = built["latents"], built["neurons"]
        nouns[name], nouns[f"{card.name}:{row.hook}"] = LATENTS.noun, NEURONS.noun
    return Built(HEADS, counts, nouns)


def _vision(request: _Request, card: Any) -> Built:
    from mechscope.microscope.build import build
    from mechscope.zoo.registry import load

    if not request.layers:
        raise MechscopeError(f"name the layers of {card.name} to build, e.g. `mechscope microscope build {card.name} "
                             "mixed3a mixed3b` (`mechscope layers MODEL` lists them)")
    size = request.evidence.size or int(card.input_shape[-1])
    data = None
    if request.dataset is not None:
        from mechscope.data.open import open_dataset

        data = DatasetEvidence(open_dataset(request.dataset, size), request.dataset, request.examples_k)
    net = load(card.name, weights=request.weights, device="cpu")
    counts = build(net, card.name, request.layers, request.out, units_per_layer=request.units_per_layer,
                   evidence=replace(request.evidence, size=size), links=request.links, dataset=data,
                   feature_use=request.feature_use, partners=request.partners, engine=request.engine,
                   device=request.device, amp=request.amp, progress=request.progress)
    return Built(VISION, {card.name: counts})


_BY_INPUT: dict[str, Callable[[_Request, Any], Built]] = {"tokens": _heads, "image": _vision}
"""The builder of a zoo model, by its card's ``input_kind``."""


__all__ = ["build_model", "Built", "SUPERPOSITION", "DEFAULT_EXPERIMENTS"]
