"""The Microscope's per-unit evidence that is computed for a whole layer at once: each unit's feature use (what
ablating it alone costs each task of the shapes world) and its universality partners (the most correlated units
of the same layer in another network).  Plain data (figure rows + PNG bytes); ``microscope.build`` decides what
is stale and writes.

- ``ablation_figures(model, model_name, layer, channels, options)``: an ``ablation`` figure per unit, a bar per
  task; ``settings = {"images", "mode", "drops": {task: drop}, "score": the largest drop, "score_name":
  "ablation cost"}`` (the layer grid can sort by it);
- ``partner_figures(model, layer, channels, options)``: a ``partner`` figure per unit without a PNG, its links
  ``settings["units"] = [{"unit", "model", "weight": r}, ...]`` (the ``k`` most correlated units of
  ``options.model`` at ``options.layer``, default the same layer name), ``"score"``: the best r
  (``"score_name": "partner r"``).

Example::

    >>> from mechscope.microscope.options import Partners
    >>> from mechscope.zoo.registry import load
    >>> rows = partner_figures(load("shapes", device="cpu"), "mixed3b", [20], Partners("shapes-seed1", images=8))
    >>> row, png = rows[0]
    >>> row["kind"], row["channel"], png, [u["model"] for u in row["settings"]["units"]]
    ('partner', 20, None, ['shapes-seed1', 'shapes-seed1', 'shapes-seed1'])
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from mechscope import raster
from mechscope.data.shapes import TASKS, ShapesDataset
from mechscope.microscope.kinds import ABLATION, PARTNER
from mechscope.microscope.options import FeatureUse, Partners
from mechscope.store import Store, read_rows

PARTNER_WORLD_SEED = 11  # the shapes world the partners' activations are compared on


# A build asks for the same held-out world, partner network and images once per layer: made once per process.
@lru_cache(maxsize=2)
def _held_out(model_name: str, n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    from mechscope.vision.circuits.feature_use import shapes_held_out

    return shapes_held_out(model_name, n)


@lru_cache(maxsize=2)
def _partner(name: str) -> nn.Module:
    from mechscope.zoo.registry import load

    return load(name, device="cpu")


@lru_cache(maxsize=2)
def _partner_images(n: int) -> torch.Tensor:
    return ShapesDataset(n, seed=PARTNER_WORLD_SEED).sample(range(n))[0]


def _drops_png(drops: dict[str, float], title: str) -> bytes:
    """A bar per task of the accuracy lost (``raster.bar_chart``: red a loss, blue a gain)."""
    return raster.png(raster.bar_chart(list(TASKS), [drops[t] for t in TASKS], title=title, ylabel="accuracy drop",
                                       height=150))


def ablation_figures(model: nn.Module, model_name: str, layer: str, channels: Sequence[int],
                     options: FeatureUse) -> list[tuple[dict[str, Any], bytes]]:
    """An ``ablation`` figure per unit of ``channels`` (see the module docstring)."""
    from mechscope.vision.circuits.feature_use import unit_ablation_table

    x, labels = _held_out(model_name, options.images)
    table = unit_ablation_table(model, layer, x, labels, mode=options.mode, channels=list(channels))
    out = []
    for i, c in enumerate(channels):
        drops = {t: round(float(v), 4) for t, v in zip(TASKS, table[i], strict=True)}
        worst = max(drops.values())
        out.append(({"layer": layer, "channel": c, "kind": ABLATION.name,
                     "settings": {"images": options.images, "mode": options.mode, "drops": drops,
                                  "score": worst, "score_name": "ablation cost",
                                  "table": {"columns": list(TASKS), "rows": [list(drops.values())]}}},
                    _drops_png(drops, f"{options.mode} ablation of {layer}:{c}")))
    return out


@torch.no_grad()
def partner_figures(model: nn.Module, layer: str, channels: Sequence[int],
                    options: Partners) -> list[tuple[dict[str, Any], None]]:
    """A ``partner`` figure per unit of ``channels`` (see the module docstring)."""
    from mechscope.vision.families.universality import activation_correlations

    other, images = _partner(options.model), _partner_images(options.images)
    theirs = options.layer or layer
    corr = activation_correlations(model, other, [(layer, theirs)], [images], progress=False)[(layer, theirs)]
    corr = torch.nan_to_num(corr, nan=0.0)
    out = []
    for c in channels:
        r, idx = corr[c].topk(min(options.k, corr.shape[1]))
        units = [{"unit": f"{theirs}:{int(j)}", "model": options.model, "weight": round(float(v), 4)}
                 for v, j in zip(r, idx, strict=True)]
        out.append(({"layer": layer, "channel": c, "kind": PARTNER.name,
                     "settings": {"model": options.model, "images": options.images, "partner_layer": theirs,
                                  "units": units,
                                  "score": units[0]["weight"], "score_name": "partner r"}}, None))
    return out


def stale_units(store: Store, model_name: str, layer: str, chosen: Sequence[int], feature_use: FeatureUse | None,
                partners: Partners | None) -> dict[str, list[int]]:
    """``{kind: channels}``: the units of ``chosen`` whose ``ablation`` / ``partner`` figures in ``store`` are
    missing or were made with other options (only the kinds whose option is given)."""
    stale: dict[str, list[int]] = {}
    for kind, option in ((ABLATION, feature_use), (PARTNER, partners)):
        if option is None:
            continue
        want = {"images": option.images, "mode": getattr(option, "mode", None), "model": getattr(option, "model", None),
                "partner_layer": getattr(option, "layer", None) or layer}
        have = {r["channel"]: r["settings"] for r in read_rows(store, "figures", model=model_name, layer=layer,
                                                                kind=kind.name)}
        stale[kind.name] = [c for c in chosen if not kind.up_to_date(have.get(c), want)]
    return stale
