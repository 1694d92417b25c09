"""Circuit graphs: a unit's strongest upstream units by expanded weight, recursively, as JSON and a picture.

The Circuits thread reads a circuit off the weights: which units of an earlier layer excite a unit, which inhibit
it, and the (expanded) weight kernel of each connection.  This module builds that reading on top of
``vision/weights.py`` (``expanded_weights``) for any conv model whose layers are named through ``mechscope.units``.

- ``upstream(model, "mixed3b:5", "mixed3a", 64, k=5)`` — the ``k`` strongest input channels of a layer feeding one
  unit.  For each channel ``c`` of the earlier layer with expanded weights ``W_c`` (``[h, w]``), the
  **excitatory** strength is ``‖relu(W_c)‖₂`` (L2 norm of the positive part) and the **inhibitory** strength
  ``‖relu(-W_c)‖₂`` (of the negative part).  Rows are ranked by ``strength = max(excitatory, inhibitory)``, and
  the dominant side gives the connection's ``sign``; ``by="excitatory"`` / ``by="inhibitory"`` rank by one side.
  Why not the signed sum: a kernel with a positive and a negative lobe (an edge or a curve read from the side)
  sums to about zero while being a strong connection; the one-sided norms keep both roles, as the one-sided NMF
  does (``vision/nmf.py``).
- ``circuit_graph(model, "mixed3b:5", ["mixed3a", "conv2d2"], 64, k=3)`` — recursively to a depth of
  ``len(layers)``: the unit's ``k`` strongest units in ``layers[0]``, each of theirs in ``layers[1]``, and so on.
  A unit reached twice is one node with two edges.  Upstream units are read at the centre of their map.
  ``CircuitGraph.to_json()`` is JSON-ready (``from_json`` reads it back); ``draw(path)`` writes a PNG with one row
  per layer, each node a feature visualization (one ``render_units`` batch for all nodes; ``featvis=False``
  for grey placeholders) and each edge coloured by sign (red excitatory, blue inhibitory, width by strength) with
  its weight kernel as a small heatmap inset at its middle.

Expanded weights are bias-free gradients through the linearized model (ReLU → identity, max-pool → average
pool): see ``expanded_weights``.  For adjacent conv layers they are the kernel itself.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Identity(), nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(),
    ...                     nn.Conv2d(4, 2, 3, padding=1, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.fill_(0.01)
    ...     _ = net[3].weight.fill_(0.01)
    ...     _ = net[3].weight[0, 2].fill_(1.0)     # channel 2 excites unit 0 ...
    ...     _ = net[3].weight[0, 1].fill_(-0.5)    # ... channel 1 inhibits it
    >>> [(r.unit, r.sign, round(r.strength, 2)) for r in upstream(net, "3:0", "2", 12, k=2)]
    [('2:2', '+', 3.0), ('2:1', '-', 1.5)]
    >>> g = circuit_graph(net, "3:0", ["2", "0"], 12, k=2)
    >>> len(g.nodes), len(g.edges), g.edges[0].source, g.edges[0].target, g.edges[0].sign
    (5, 6, '2:2', '3:0', '+')
    >>> CircuitGraph.from_json(g.to_json()) == g
    True
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from mechscope.artefacts import atomic_write_bytes
from mechscope.errors import MechscopeError
from mechscope.units import Unit, validate
from mechscope.vision.featvis.render import render_units
from mechscope.vision.circuits.weights import expanded_weights_of, kernel_heatmap

Ranking = Literal["strength", "excitatory", "inhibitory"]
_RANKINGS = ("strength", "excitatory", "inhibitory")
_RED, _BLUE = "#b2182b", "#2166ac"  # the ends of RdBu_r, as in kernel_heatmap


@dataclass(frozen=True)
class Upstream:
    """One input channel feeding a unit: its name, one-sided strengths and expanded-weight kernel ``[h, w]``."""

    unit: str
    excitatory: float
    inhibitory: float
    weights: torch.Tensor = field(repr=False, compare=False)

    @property
    def strength(self) -> float:
        """``max(excitatory, inhibitory)``."""
        return max(self.excitatory, self.inhibitory)

    @property
    def sign(self) -> str:
        """``"+"`` where the positive part dominates (ties count as excitatory), else ``"-"``."""
        return "+" if self.excitatory >= self.inhibitory else "-"


def _unit(model: nn.Module, name: str | Unit) -> Unit:
    parsed = validate(model, name)
    if not isinstance(parsed, Unit):
        raise MechscopeError(f"expected a unit such as 'mixed3b:5', got {str(parsed)!r}")
    return parsed


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise MechscopeError(f"k is the number of upstream units to keep, at least 1 (got {k!r})")


def upstream(model: nn.Module, unit: str | Unit, layer_a: str, input_size: int | Sequence[int], k: int = 5,
             *, by: Ranking = "strength") -> list[Upstream]:
    """The ``k`` strongest channels of ``layer_a`` feeding ``unit``, by one-sided norms of the expanded weights.

    Args:
        model: any image model; layers named as for ``capture``.
        unit: ``"layer:channel"`` (optionally ``@x,y``; default the centre of its map).
        layer_a: an earlier layer (``"mixed3a"``).
        input_size: model input ``H``, ``(H, W)`` or ``(C, H, W)``, as for ``expanded_weights``.
        k: rows to return (at most the width of ``layer_a``).
        by: ``"strength"`` (``max`` of both sides, default), ``"excitatory"`` or ``"inhibitory"``.

    Returns:
        Rows ranked by ``by``, descending (ties by channel index); channels whose ranking norm is zero are left
        out, so fewer than ``k`` rows may come back.  ``row.weights`` is that channel's ``[h, w]`` slice of
        ``expanded_weights(model, layer_a, unit, input_size)`` (``[C_A, h, w]``).
    """
    return upstream_of(model, [unit], layer_a, input_size, k, by=by)[0]


def upstream_of(model: nn.Module, units: Sequence[str | Unit], layer_a: str, input_size: int | Sequence[int],
                k: int = 5, *, by: Ranking = "strength") -> list[list[Upstream]]:
    """``upstream`` of each of ``units`` (of one layer), from one forward pass of the linearized model
    (``weights.expanded_weights_of``): the same rows as one ``upstream`` call per unit.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Identity(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
    >>> [[r.unit for r in rows] for rows in upstream_of(net, ["3:0", "3:1"], "2", 12, k=1)] == [
    ...     [r.unit for r in upstream(net, f"3:{c}", "2", 12, k=1)] for c in (0, 1)]
    True
    """
    _check_k(k)
    if by not in _RANKINGS:
        raise MechscopeError(f"by must be one of {', '.join(_RANKINGS)}, not {by!r}")
    targets = [_unit(model, unit) for unit in units]
    source = validate(model, layer_a).layer
    if any(source == target.layer for target in targets):
        raise MechscopeError(f"layer_a {source!r} is the unit's own layer; name an earlier layer")
    return [_ranked(w, source, k, by) for w in expanded_weights_of(model, source, targets, input_size)]


def _ranked(w: torch.Tensor, source: str, k: int, by: Ranking) -> list[Upstream]:
    """The ``k`` strongest channels of the expanded weights ``w`` (``[C_A, h, w]``) by ``by``."""
    flat = w.detach().double().flatten(1)
    exc = flat.clamp(min=0).norm(dim=1)
    inh = (-flat).clamp(min=0).norm(dim=1)
    score = {"strength": torch.maximum(exc, inh), "excitatory": exc, "inhibitory": inh}[by]
    order = torch.sort(score, descending=True, stable=True).indices[:k]
    return [Upstream(f"{source}:{int(c)}", float(exc[c]), float(inh[c]), w[c].detach().clone())
            for c in order if score[c] > 0]


@dataclass(frozen=True)
class Node:
    """A unit of the graph; ``depth`` 0 is the root, ``depth`` i a unit of ``layers[i - 1]``."""

    unit: str
    layer: str
    depth: int


@dataclass(frozen=True)
class Edge:
    """A connection ``source`` (upstream unit) → ``target``; ``kernel`` is the expanded weight ``[h, w]`` as lists."""

    source: str
    target: str
    sign: str
    strength: float
    excitatory: float
    inhibitory: float
    kernel: list[list[float]] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "sign": self.sign, "strength": self.strength,
                "excitatory": self.excitatory, "inhibitory": self.inhibitory, "kernel": self.kernel}


@dataclass(eq=True)
class CircuitGraph:
    """Nodes (root first, then by depth) and edges of a unit's upstream circuit; see ``circuit_graph``."""

    root: str
    layers: list[str]
    input_size: list[int]
    k: int
    nodes: list[Node]
    edges: list[Edge]
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: ``root``, ``layers``, ``input_size``, ``k``, ``nodes`` and ``edges`` (``from``,
        ``to``, ``sign``, ``strength``, ``excitatory``, ``inhibitory``, ``kernel``)."""
        return {"root": self.root, "layers": list(self.layers), "input_size": list(self.input_size), "k": self.k,
                "nodes": [{"unit": n.unit, "layer": n.layer, "depth": n.depth} for n in self.nodes],
                "edges": [e.to_json() for e in self.edges]}

    @classmethod
    def from_json(cls, data: dict[str, Any], model: nn.Module | None = None) -> CircuitGraph:
        """Read back ``to_json``'s dict (``model`` only needed to ``draw`` feature visualizations)."""
        try:
            return cls(root=data["root"], layers=list(data["layers"]), input_size=list(data["input_size"]),
                       k=int(data["k"]),
                       nodes=[Node(n["unit"], n["layer"], int(n["depth"])) for n in data["nodes"]],
                       edges=[Edge(e["from"], e["to"], e["sign"], float(e["strength"]), float(e["excitatory"]),
                                   float(e["inhibitory"]), [[float(v) for v in row] for row in e["kernel"]])
                              for e in data["edges"]],
                       model=model)
        except (KeyError, TypeError, ValueError) as exc:
            raise MechscopeError(f"not a circuit graph's JSON ({type(exc).__name__}: {exc})") from None

    def levels(self) -> list[list[Node]]:
        """Nodes grouped by depth: ``levels()[0] == [root]``."""
        out: list[list[Node]] = [[] for _ in range(len(self.layers) + 1)]
        for n in self.nodes:
            out[n.depth].append(n)
        return out

    def draw(self, path: str | os.PathLike, featvis: bool = True, steps: int = 64, *, size: int | None = None,
             model: nn.Module | None = None, dpi: int = 100) -> Path:
        """Draw the graph to a PNG at ``path`` (atomically) and return the path.

        One row per depth (the root on top), nodes as feature visualizations (all rendered in one
        ``render_units`` batch of ``steps`` steps at ``size``, default the input height) or, with
        ``featvis=False``, grey squares with the unit's name; edges red (excitatory) or blue (inhibitory), width
        by strength, each with its kernel heatmap (``RdBu_r``, own symmetric limits) inset at its middle.
        """
        from matplotlib.figure import Figure

        levels = self.levels()
        images: dict[str, torch.Tensor] = {}
        if featvis:
            net = model if model is not None else self.model
            if net is None:
                raise MechscopeError("draw(featvis=True) needs the model: pass model=, or featvis=False")
            units = [n.unit for n in self.nodes]
            final = render_units(net, units, size=size or self.input_size[-2], steps=steps, progress=False).final
            images = {u: final[i].detach().float().clamp(0, 1).permute(1, 2, 0).cpu() for i, u in enumerate(units)}

        cols = max(len(level) for level in levels)
        cell, gap = 1.4, 1.5  # inches: node side, vertical room for edges between rows
        head, title = 0.5, 0.25  # inches: room for the figure's title, a node's title
        width, height = max(cols * cell * 1.5, 4.0), head + len(levels) * (cell + title) + (len(levels) - 1) * gap + 0.1
        fig = Figure(figsize=(width, height), dpi=dpi)
        bg = fig.add_axes((0, 0, 1, 1))
        bg.set_xlim(0, width)
        bg.set_ylim(0, height)
        bg.axis("off")
        centre: dict[str, tuple[float, float]] = {}
        for d, level in enumerate(levels):
            y = height - head - title - cell / 2 - d * (cell + title + gap)
            for i, node in enumerate(level):
                x = width * (i + 0.5) / len(level)
                centre[node.unit] = (x, y)
                ax = fig.add_axes(((x - cell / 2) / width, (y - cell / 2) / height, cell / width, cell / height))
                if node.unit in images:
                    ax.imshow(images[node.unit].numpy())
                else:
                    ax.imshow([[0.85]], cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(node.unit, fontsize=8)
        top = max((e.strength for e in self.edges), default=1.0) or 1.0
        inset = 0.45
        for e in self.edges:
            (x0, y0), (x1, y1) = centre[e.source], centre[e.target]
            y0, y1 = y0 + cell / 2 + title, y1 - cell / 2  # above the upstream node's title → below the target
            bg.plot([x0, x1], [y0, y1], color=_RED if e.sign == "+" else _BLUE, lw=0.5 + 3.0 * e.strength / top,
                    alpha=0.8, zorder=1)
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            kax = fig.add_axes(((mx - inset / 2) / width, (my - inset / 2) / height, inset / width, inset / height))
            kernel_heatmap(torch.tensor(e.kernel) if e.kernel and e.kernel[0] else torch.zeros(1, 1), kax)
        fig.suptitle(f"circuit of {self.root} (k={self.k}; red excitatory, blue inhibitory)", fontsize=9,
                     y=1 - 0.15 / height)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        out = Path(path)
        atomic_write_bytes(out, buf.getvalue())
        return out


def circuit_graph(model: nn.Module, unit: str | Unit, layers: Sequence[str], input_size: int | Sequence[int],
                  k: int = 3, *, by: Ranking = "strength") -> CircuitGraph:
    """The upstream circuit of ``unit``: its ``k`` strongest units in ``layers[0]``, theirs in ``layers[1]``, …

    Args:
        model: any image model; layers named as for ``capture``.
        unit: the root, ``"layer:channel"`` (optionally ``@x,y``).
        layers: earlier layers from the unit's downwards (``["mixed3a", "conv2d2"]``); depth ``= len(layers)``.
        input_size: model input ``H``, ``(H, W)`` or ``(C, H, W)``, as for ``expanded_weights``.
        k: upstream units kept per node (ranked by ``by``, see ``upstream``).

    Returns:
        ``CircuitGraph`` with at most ``1 + k + k² + …`` nodes (a unit reached twice is one node) and one edge per
        (upstream, downstream) pair: sign, strength, one-sided norms and the ``[h, w]`` expanded-weight kernel.
    """
    _check_k(k)
    root = _unit(model, unit)
    names = [validate(model, layer).layer for layer in layers]
    if not names:
        raise MechscopeError("layers must name at least one earlier layer, e.g. ['mixed3a']")
    seen_layers = [root.layer, *names]
    dup = sorted({n for n in seen_layers if seen_layers.count(n) > 1})
    if dup:
        raise MechscopeError(f"each layer may appear once (the unit's layer, then layers downwards); "
                             f"repeated: {', '.join(dup)}")
    nodes = [Node(str(root), root.layer, 0)]
    edges: list[Edge] = []
    frontier = [str(root)]
    for depth, layer in enumerate(names, start=1):
        found: dict[str, Node] = {}
        for target in frontier:
            for row in upstream(model, target, layer, input_size, k, by=by):
                found.setdefault(row.unit, Node(row.unit, layer, depth))
                edges.append(Edge(row.unit, target, row.sign, row.strength, row.excitatory, row.inhibitory,
                                  row.weights.double().tolist()))
        nodes.extend(found.values())
        frontier = list(found)
    size = [input_size] * 2 if isinstance(input_size, int) else [int(s) for s in input_size]
    return CircuitGraph(str(root), names, size, k, nodes, edges, model=model)
