"""``mechscope polysemantic``: the most polysemantic units of a layer of a zoo image model over the shapes world,
as JSON and a picture (one row per unit: its entropy and the histogram of its top-k examples' concept labels).

Example (tiny sizes)::

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out:
    ...     r = polysemantic_units(out, "shapes", "conv2d1", k=4, top=3, images=24)
    >>> r["layer"], len(r["most_polysemantic"]), sorted(r["most_polysemantic"][0])
    ('conv2d1', 3, ['channel', 'effective_labels', 'entropy_bits', 'live', 'top_labels'])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mechscope.artefacts import atomic_write_json
from mechscope.data.shapes import ShapesDataset
from mechscope.errors import MechscopeError
from mechscope.plots import agg_figure, save_figure
from mechscope.vision.evidence.polysemanticity import (CONCEPTS, Polysemanticity, concept_labels,
                                                       image_activations, polysemanticity)


def unit_rows(p: Polysemanticity, channels: list[int], n_labels: int = 3) -> list[dict[str, Any]]:
    """JSON rows of ``channels``: entropy, effective number of labels, live, top labels (concept names, shares)."""
    return [{"channel": c, "entropy_bits": round(float(p.entropy[c]), 4),
             "effective_labels": round(float(p.effective[c]), 3), "live": bool(p.live[c]),
             "top_labels": [[CONCEPTS[i], share] for i, share in p.top_labels(c, n_labels)]} for c in channels]


def most_polysemantic(p: Polysemanticity, top: int) -> list[int]:
    """The ``top`` live units of highest entropy (ties: lower channel first); dead units only if too few live."""
    order = sorted(range(len(p.entropy)), key=lambda c: (not bool(p.live[c]), -float(p.entropy[c]), c))
    return order[:top]


def polysemantic_units(out: str | os.PathLike, model: str, layer: str, *, k: int = 50, top: int = 10,
                       images: int = 2000, seed: int = 1000, device: str = "cpu") -> dict[str, Any]:
    """Measure every unit of ``layer`` of the zoo model ``model`` on ``images`` images of the shapes world
    ``seed`` (default: the shapes organism's held-out world) with top-``k`` examples; write
    ``out/polysemantic_<layer>.json`` (settings, per-layer medians, the ``top`` most polysemantic units, every
    unit's entropy) and ``.png``; return the JSON payload."""
    from mechscope.zoo.registry import get_card, load

    card = get_card(model)
    if not isinstance(top, int) or top < 1:
        raise MechscopeError(f"--top must be at least 1, got {top!r}")
    if not isinstance(images, int) or images < k:
        raise MechscopeError(f"need at least k={k} images, got {images!r}")
    net = load(card.name, device=device).eval()
    x, labels = ShapesDataset(images, size=int(card.input_shape[-1]), seed=seed).sample(range(images))
    concepts = concept_labels(labels)
    p = polysemanticity(image_activations(net, layer, x), concepts, k, len(CONCEPTS))
    chosen = most_polysemantic(p, top)
    payload = {"model": card.name, "layer": layer, "images": images, "world_seed": seed, "k": k,
               "concepts": list(CONCEPTS), "live_units": int(p.live.sum()), "units": int(p.live.numel()),
               "median_entropy_bits_live": round(p.median(), 4),
               "most_polysemantic": unit_rows(p, chosen),
               "entropy_bits": [round(float(h), 4) for h in p.entropy]}
    out = Path(out)
    atomic_write_json(out / f"polysemantic_{layer}.json", payload)
    save_figure(polysemantic_figure(p, chosen, f"{card.name} {layer}: most polysemantic units (top-{k} of {images} "
                                             f"images)"), out / f"polysemantic_{layer}.png", dpi=80)
    return payload


def polysemantic_figure(p: Polysemanticity, chosen: list[int], title: str, names: tuple[str, ...] = CONCEPTS) -> Any:
    """A figure (``plots.agg_figure``, no pyplot state) of the ``chosen`` units: left, each one's entropy (bars);
    right, its top-k label histogram (stacked shares by concept ``names``)."""
    fig = agg_figure(10, 0.35 * len(chosen) + 1.8)
    left, right = fig.subplots(1, 2, width_ratios=[1, 3])
    ys = list(range(len(chosen)))[::-1]
    left.barh(ys, [float(p.entropy[c]) for c in chosen], color="tab:purple")
    left.set_yticks(ys, [str(c) for c in chosen], fontsize=7)
    left.set_xlabel("entropy (bits)")
    shares = p.counts[chosen].double() / p.k                                     # [top, n_labels]
    start = torch.zeros(len(chosen), dtype=torch.float64)
    for i, name in enumerate(names[:shares.shape[1]]):
        if float(shares[:, i].sum()) > 0:
            right.barh(ys, shares[:, i].numpy(), left=start.numpy(), color=_colour(i), label=name)
            start += shares[:, i]
    right.set_yticks(ys, [])
    right.set_xlim(0, 1)
    right.set_xlabel(f"share of the top-{p.k} examples")
    right.legend(fontsize=5, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title, fontsize=9)
    return fig


def _colour(i: int) -> tuple[float, float, float, float]:
    import matplotlib

    return matplotlib.colormaps["tab20" if i < 20 else "tab20b"](i % 20)


__all__ = ["polysemantic_units", "unit_rows", "most_polysemantic", "polysemantic_figure"]
