"""The Microscope's polysemanticity view: from a dataset scan over a labelled world (the shapes world), each unit's
entropy of its top-k dataset examples' concept labels (``vision.evidence.polysemanticity``) as a score the layer
grid sorts by, and a layer-wide list of the most polysemantic units.

Written by ``build`` after its dataset scan (``save_polysemanticity``), only when the dataset's items carry the
shapes world's labels (``dataset.sample(indices)`` returning ``(images, {"kind", "shape", ...})``); other
datasets get nothing.  Rows:

* per unit, a ``polysemanticity`` figure without PNG: ``settings = {"dataset", "examples_k", "size", "score"
  (bits), "score_name": "polysemanticity (bits)", "effective_labels", "live", "table"}`` (its top concepts and
  their shares of the top-k);
* per layer (channel ``-1``), a ``polysemantic_units`` figure: the ``TOP`` most polysemantic live units, their
  entropies and label histograms as a PNG, a table and links to their pages.

Example::

    >>> import tempfile, torch
    >>> from mechscope.data.shapes import ShapesDataset
    >>> from mechscope.microscope.build import build
    >>> from mechscope.microscope.options import DatasetEvidence, Evidence
    >>> from mechscope.store import open_store, read_rows
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.ReLU()).eval()
    >>> out = tempfile.mkdtemp()
    >>> r = build(net, "toy", ["1"], out, evidence=Evidence(steps=1, size=16, negative=False, tuning=False),
    ...           dataset=DatasetEvidence(ShapesDataset(8, size=16), "shapes:8", examples_k=2), progress=False)
    >>> with open_store(out) as store:
    ...     units = read_rows(store, "figures", layer="1", kind=POLYSEMANTICITY.name)
    ...     layer_wide = read_rows(store, "figures", layer="1", kind=POLYSEMANTIC_UNITS.name)
    >>> [r["channel"] for r in units], units[0]["settings"]["score_name"], [r["channel"] for r in layer_wide]
    ([0, 1], 'polysemanticity (bits)', [-1])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from mechscope.microscope.kinds import POLYSEMANTIC_UNITS, POLYSEMANTICITY
from mechscope.plots import png_of
from mechscope.store import Store, put_png, put_rows, transaction
from mechscope.vision.evidence.polysemanticity import CONCEPTS, concept_labels, from_top_examples
from mechscope.vision.evidence.polysemantic_report import most_polysemantic, polysemantic_figure

TOP = 10
_NAMES = (*CONCEPTS, "(no example)")   # an empty top-k slot (a dataset smaller than k)


def _labels_of(dataset: Any, indices: list[int], batch: int = 256) -> dict[int, int] | None:
    """Concept label of each dataset index, or ``None`` when the dataset's items carry no shapes-world labels."""
    if not hasattr(dataset, "sample"):
        return None
    found: dict[int, int] = {}
    for lo in range(0, len(indices), batch):
        part = indices[lo:lo + batch]
        sampled = dataset.sample(part)
        labels = sampled[1] if isinstance(sampled, tuple) and len(sampled) == 2 else None
        if not isinstance(labels, dict) or "kind" not in labels:
            return None
        found.update(zip(part, concept_labels(labels).tolist(), strict=True))
    return found


def save_polysemanticity(store: Store, state: Any, dataset: Any, model_name: str, layers: Iterable[str],
                         tag: dict[str, Any]) -> int:
    """Write the polysemanticity rows of ``layers`` from a scan ``state`` (``vision.evidence.scan``); returns the
    number of units written (0 when the dataset has no shapes-world labels)."""
    layers = list(layers)
    tops = {layer: state.examples[layer] for layer in layers}
    wanted = sorted({int(i) for ex in tops.values() for i in ex.top_index.flatten().tolist() if i >= 0})
    concept = _labels_of(dataset, wanted)
    if concept is None:
        return 0
    written = 0
    with transaction(store):
        for layer, ex in tops.items():
            empty = len(CONCEPTS)
            top_labels = torch.tensor([[concept.get(int(i), empty) for i in row] for row in ex.top_index.tolist()])
            live = (ex.top_index >= 0).all(1) & (ex.top_values[:, -1] > 0)
            p = from_top_examples(ex.top_index, top_labels, len(_NAMES), live=live)
            rows = [{"model": model_name, "layer": layer, "channel": c, "kind": POLYSEMANTICITY.name, "png": None,
                     "settings": {**tag, "score": round(float(p.entropy[c]), 4),
                                  "score_name": "polysemanticity (bits)",
                                  "effective_labels": round(float(p.effective[c]), 3), "live": bool(p.live[c]),
                                  "table": {"columns": ["concept", f"share of top-{p.k}"],
                                            "rows": [[_NAMES[i], share] for i, share in p.top_labels(c, 5)]},
                                  "note": f"entropy of the concept labels of the unit's top-{p.k} dataset examples; "
                                          f"{'live' if p.live[c] else 'not live (fewer than k positive examples)'}"}}
                    for c in range(ex.channels)]
            chosen = most_polysemantic(p, min(TOP, ex.channels))
            fig = polysemantic_figure(p, chosen, f"{layer}: most polysemantic units (top-{p.k})", _NAMES)
            rows.append({"model": model_name, "layer": layer, "channel": -1, "kind": POLYSEMANTIC_UNITS.name,
                         "png": put_png(store, png_of(fig)),
                         "settings": {**tag, "units": [{"unit": f"{layer}:{c}", "weight": round(float(p.entropy[c]), 4)}
                                                       for c in chosen],
                                      "table": {"columns": ["unit", "bits", "top concepts"],
                                                "rows": [[f"{layer}:{c}", round(float(p.entropy[c]), 3),
                                                          ", ".join(f"{_NAMES[i]} {s:.0%}" for i, s in p.top_labels(c))]
                                                         for c in chosen]}}})
            put_rows(store, "figures", rows)
            written += ex.channels
    return written


__all__ = ["save_polysemanticity", "TOP"]
