"""Weight banding per convolution of a network, against the same network untrained.

``kernel_banding`` (``weights.py``) scores single kernels; this module reads whole networks:

- ``layer_banding(net)`` — for every ``nn.Conv2d`` with kernels larger than 1x1 (by module path): its kernel
  size, the shares of its kernels banded horizontally / vertically / either way (``KernelBanding.shares``) and
  the pooled ``banding`` score (which cancels when bands run both ways; kept for comparison).
- ``excess(trained, untrained)`` — per layer (the first part of a module path), the largest banded share minus
  the untrained share of the same conv: random kernels are banded by chance, more often the smaller they are,
  so the untrained network of the same architecture is the baseline for every kernel size.
- ``banding_comparison(net, control)`` — both tables and the excess per conv and per axis.
- ``write_banding_report(net, control, out, stem)`` — that comparison as ``<stem>_banding.json`` and a bar chart
  ``<stem>_banding.png`` (banded share per conv, trained beside untrained, split horizontal / vertical): what
  ``mechscope banding`` writes.

Example::

    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0) and None
    >>> net, control = nn.Sequential(nn.Conv2d(1, 4, 3)), nn.Sequential(nn.Conv2d(1, 4, 3))
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.arange(3.0)[:, None].expand(4, 1, 3, 3))   # four horizontal bands
    >>> layer_banding(net)["0"]["horizontal"], excess(layer_banding(net), layer_banding(control))["0"] > 0.5
    (1.0, True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from mechscope.artefacts import atomic_write_json
from mechscope.errors import MechscopeError
from mechscope.plots import new_figure, save_figure
from mechscope.vision.circuits.weights import banding, kernel_banding

BANDED = 0.5      # a kernel is banded when |horizontal share - vertical share| >= BANDED


def layer_banding(net: nn.Module, threshold: float = BANDED) -> dict[str, dict[str, Any]]:
    """``{conv module path: {"kernel", "horizontal", "vertical", "banded", "pooled_score"}}`` for every conv with
    kernels larger than 1x1: the shares of its kernels banded each way and the pooled ``banding`` score."""
    out: dict[str, dict[str, Any]] = {}
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d) and max(module.kernel_size) > 1:
            shares = kernel_banding(module.weight).shares(threshold)
            out[name] = {"kernel": "x".join(map(str, module.kernel_size)), **shares,
                         "pooled_score": round(banding(module.weight).score, 3)}
    return out


def excess(trained: dict[str, dict], untrained: dict[str, dict], key: str = "banded") -> dict[str, float]:
    """Per layer (the first part of a conv's module path): the largest ``key`` share (``banded``,
    ``horizontal`` or ``vertical``) minus the untrained share of the same conv."""
    missing = sorted(set(trained) - set(untrained))
    if missing:
        raise MechscopeError(f"convs {missing[:3]} have no untrained counterpart: compare the same architecture")
    out: dict[str, float] = {}
    for name, row in trained.items():
        block, gap = name.split(".")[0], round(row[key] - untrained[name][key], 4)
        out[block] = max(out.get(block, gap), gap)
    return out


def banding_comparison(net: nn.Module, control: nn.Module, layers: list[str] | None = None,
                       threshold: float = BANDED) -> dict[str, Any]:
    """Banding of ``net``'s convs against ``control`` (the same architecture untrained).

    Returns ``{"threshold", "convs": {path: row}, "untrained_convs": {...}, "excess": {path: {"banded",
    "horizontal", "vertical"}}}``, restricted to the convs whose path or layer (first path part) is in
    ``layers`` when given.
    """
    trained, untrained = layer_banding(net, threshold), layer_banding(control, threshold)
    if layers:
        unknown = [n for n in layers if not any(n in (p, p.split(".")[0]) for p in trained)]
        if unknown:
            raise MechscopeError(f"no conv with kernels larger than 1x1 at {unknown}; "
                                 f"choose from {sorted(trained)}")
        keep = [p for p in trained if p in layers or p.split(".")[0] in layers]
        trained = {p: trained[p] for p in keep}
        untrained = {p: untrained[p] for p in keep}
    gaps = {p: {k: round(trained[p][k] - untrained[p][k], 4) for k in ("banded", "horizontal", "vertical")}
            for p in trained}
    return {"threshold": threshold, "convs": trained, "untrained_convs": untrained, "excess": gaps}


def write_banding_report(net: nn.Module, control: nn.Module, out: str | Path, stem: str,
                         layers: list[str] | None = None, threshold: float = BANDED) -> dict[str, Any]:
    """``banding_comparison`` saved as ``out/<stem>_banding.json`` and ``out/<stem>_banding.png``; returns it
    with ``"files"`` (the two paths) added."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = banding_comparison(net, control, layers, threshold)
    convs = list(record["convs"])
    fig, ax = new_figure(figsize=(max(4.0, 0.9 * len(convs) + 1.5), 3.2))
    xs = range(len(convs))
    for offset, table, label, shade in ((-0.2, record["convs"], "trained", 1.0),
                                        (0.2, record["untrained_convs"], "untrained", 0.45)):
        h = [table[c]["horizontal"] for c in convs]
        v = [table[c]["vertical"] for c in convs]
        ax.bar([x + offset for x in xs], h, 0.38, color=(0.15, 0.35, 0.75, shade), label=f"{label}: horizontal")
        ax.bar([x + offset for x in xs], v, 0.38, bottom=h, color=(0.85, 0.35, 0.15, shade),
               label=f"{label}: vertical")
    ax.set_xticks(list(xs), [f"{c}\n{record['convs'][c]['kernel']}" for c in convs], fontsize=7)
    ax.set_ylabel(f"share of kernels banded (|score| >= {threshold})", fontsize=7)
    ax.set_title(f"{stem}: weight banding per conv, trained vs untrained", fontsize=8)
    ax.legend(fontsize=6)
    png, js = out / f"{stem}_banding.png", out / f"{stem}_banding.json"
    save_figure(fig, png, dpi=80)
    atomic_write_json(js, record)
    return {**record, "files": [str(js), str(png)]}
