"""What ``mechscope models`` and ``mechscope layers`` list, as rows a notebook gets too.

* ``model_rows()``: one row per model of the zoo (name, aliases, input, the weights on offer, description);
* ``layer_rows(name)``: an image model's layers (channels, spatial size at its input size, pre-ReLU / branch
  flags, module path) or a language model's hook points (shape without the batch, at ``n_ctx`` positions);
* ``atlas_layers(name)``: the layers a whole-model atlas covers (``mechscope microscope build --all-layers``).

>>> rows = model_rows()
>>> "shapes" in [r["name"] for r in rows], sorted(rows[0])
(True, ['aliases', 'description', 'input', 'name', 'weights'])
>>> listing = layer_rows("shapes")
>>> listing.kind, listing.rows[0]["name"], sorted(listing.rows[0])
('image', 'conv2d0_pre_relu', ['branch', 'channels', 'module', 'name', 'pre_relu', 'spatial'])
>>> atlas_layers("shapes")
{'conv2d0': 32, 'conv2d1': 32, 'conv2d2': 64, 'mixed3a': 128, 'mixed3b': 208, 'mixed4a': 224, 'mixed4b': 256}
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


def atlas_layers(name: str) -> dict[str, int]:
    """``{layer: units}`` of the layers a whole-model atlas of the zoo image model ``name`` covers, in forward
    order: every layer with spatial maps except pre-ReLU taps and branches (their units are parts of a main
    layer's) and pooling layers (they repeat their input's units), as OpenAI Microscope's conv2d0..mixed5b."""
    from mechscope.errors import MechscopeError
    from mechscope.zoo.registry import get_card, load

    listing = layer_rows(name)
    if listing.kind != "image":
        raise MechscopeError(f"{name} is a language model: its Microscope has every head already; --all-layers is "
                             "for image models")
    net = load(get_card(name).name, weights="random", device="cpu")
    def pools(path: str) -> bool:    # torch's pooling modules and the zoo's own (SameMaxPool2d)
        try:
            return "pool" in type(net.get_submodule(path)).__name__.lower()
        except AttributeError:
            return False

    return {r["name"]: int(r["channels"]) for r in listing.rows
            if len(r["spatial"]) == 2 and not r["pre_relu"] and not r["branch"] and not pools(r["module"])}
