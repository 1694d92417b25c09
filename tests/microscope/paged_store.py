"""A store of random feature-visualization PNGs for serving tests and the server's load benchmark."""

from __future__ import annotations

from pathlib import Path

import torch

from mechscope.images import png_bytes
from mechscope.microscope.site import layer_url, unit_url
from mechscope.store import open_store, put_png, put_rows, transaction


def build_paged_store(root: str | Path, layers: dict[str, int], px: int = 16) -> list[str]:
    """Fill ``root`` with model ``m``'s ``layers`` ({layer: units}), a ``px``-square PNG per unit; return the site
    paths a reader fetches (index, layer pages, unit pages, PNGs)."""
    gen = torch.Generator().manual_seed(0)
    paths = ["", "index.html"]
    with open_store(root) as store:
        rows = []
        for layer, units in layers.items():
            paths.append(layer_url("m", layer))
            for c in range(units):
                png = put_png(store, png_bytes(torch.rand(3, px, px, generator=gen)))
                rows.append({"model": "m", "layer": layer, "channel": c, "kind": "featvis", "png": png,
                             "settings": {"score": c / units, "score_name": "activation"}})
                paths += [unit_url("m", layer, c), png]
        with transaction(store):
            put_rows(store, "layers", [{"model": "m", "layer": layer, "channels": units,
                                        "settings": {"kind": "vision"}} for layer, units in layers.items()])
            put_rows(store, "figures", rows)
    return paths
