"""What ``mechscope models`` and ``mechscope layers`` list, as rows a notebook gets too.

* ``model_rows()``: one row per model of the zoo (name, aliases, input, the weights on offer, description);
* ``layer_rows(name)``: an image model's layers (channels, spatial size at its input size, pre-ReLU / branch
  flags, module path) or a language model's hook points (shape without the batch, at ``n_ctx`` positions).

>>> rows = model_rows()
>>> "shapes" in [r["name"] for r in rows], sorted(rows[0])
(True, ['aliases', 'description', 'input', 'name', 'weights'])
>>> listing = layer_rows("shapes")
>>> listing.kind, listing.rows[0]["name"], sorted(listing.rows[0])
('image', 'conv2d0_pre_relu', ['branch', 'channels', 'module', 'name', 'pre_relu', 'spatial'])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def model_rows() -> list[dict[str, Any]]:
    """One row per zoo model: ``{"name", "aliases", "input", "weights", "description"}`` (``input``: the image
    shape, or ``["N tokens"]``; ``weights``: which of bundled, download, random are on offer)."""
    from mechscope.zoo.registry import cards

    return [
        {
            "name": c.name,
            "aliases": list(c.aliases),
            "input": list(c.input_shape) if c.input_kind == "image" else [f"{c.input_shape[0]} tokens"],
            "weights": [w for w, ok in (("bundled", c.bundled), ("download", c.download), ("random", True)) if ok],
            "description": c.description,
        }
        for c in cards()
    ]


@dataclass(frozen=True)
class LayerListing:
    """``kind``: ``"image"`` (rows ``{"name", "channels", "spatial", "pre_relu", "branch", "module"}``) or
    ``"tokens"`` (rows ``{"name", "shape"}`` of hook points at ``positions`` positions)."""

    kind: str
    rows: list[dict[str, Any]]
    positions: int | None = None


def layer_rows(name: str) -> LayerListing:
    """The layers of the zoo model ``name`` (built with random weights; nothing is downloaded)."""
    import torch

    from mechscope.capture import layer_shapes
    from mechscope.zoo.registry import get_card, load

    card = get_card(name)
    net = load(card.name, weights="random", device="cpu")
    if card.input_kind == "tokens":   # a language model: its hook points, by path, at n_ctx positions
        with torch.no_grad():
            _, cache = net.run_with_cache(torch.zeros(1, card.input_shape[0], dtype=torch.long))
        return LayerListing("tokens", [{"name": n, "shape": list(v.shape[1:])} for n, v in cache.items()],
                            int(card.input_shape[0]))
    shapes = layer_shapes(net, card.input_shape)
    return LayerListing("image", [
        {"name": layer, "channels": info.channels, "spatial": list(shapes[layer][1:]), "pre_relu": info.pre_relu,
         "branch": info.branch, "module": info.path}
        for layer, info in net.layer_table.items()
    ])
