"""What the Microscope's pages read from a store, read once per page or export (``StoreView``), and how its values
are shown as text.

Example::

    >>> number_text(0.123456), stat_text("quantiles", {"0.5": 1.0}), score_of({"score": 2, "score_name": "k"})
    ('0.1235', '50%: 1', (2.0, 'k'))
    >>> link_target("mixed3a:12"), link_target("blocks.0.attn:1"), link_target("mixed3a"), link_target("a:1@2,3")
    (('mixed3a', 12), ('blocks.0.attn', 1), None, None)
    >>> link_target("a <b>:3"), link_target("a <b>:3", layers=["a <b>", "x"])
    (None, ('a <b>', 3))
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mechscope.errors import MechscopeError
from mechscope.microscope.kinds import FEATVIS, LATENTS, NEURONS
from mechscope.microscope.urls import is_png_path
from mechscope.store import Store, count_channels, read_rows, unit_channels
from mechscope.units import Head, Unit, parse

_CHANNEL = re.compile(r"0|[1-9][0-9]*")


@dataclass
class StoreView:
    """What the pages need from one store, read once: its layers and (lazily) their units."""

    store: Store
    layers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _units: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, store: Store) -> StoreView:
        view = cls(store)
        for row in read_rows(store, "layers"):
            view.layers[(row["model"], row["layer"])] = row
        return view

    def units(self, model: str, layer: str) -> list[int]:
        key = (model, layer)
        if key not in self.layers:
            return []
        if key not in self._units:
            n = self.layers[key].get("channels")
            if isinstance(n, int) and n > 0:
                self._units[key] = list(range(n))
            else:
                self._units[key] = unit_channels(self.store, model, layer)
        return self._units[key]

    def has_unit(self, model: str, layer: str, channel: int) -> bool:
        units = self.units(model, layer)
        if units and units[-1] == len(units) - 1:  # a range
            return 0 <= channel < len(units)
        return channel in units

    def layer_names(self, model: str) -> list[str]:
        """The layers of ``model`` in the store."""
        return [layer for m, layer in self.layers if m == model]

    def kind(self, model: str, layer: str) -> str:
        settings = self.layers.get((model, layer), {}).get("settings")
        return str(settings.get("kind", "")) if isinstance(settings, dict) else ""

    def thumbnail(self, model: str, layer: str) -> str:
        """The figure kind a layer's grid shows per unit (``settings["thumbnail"]``, default ``"featvis"``)."""
        settings = self.layers.get((model, layer), {}).get("settings")
        return str(settings.get("thumbnail") or FEATVIS.name) if isinstance(settings, dict) else FEATVIS.name

    def layer_picture(self, model: str, layer: str) -> tuple[int, str] | None:
        """``(channel, png path)`` of the picture that stands for a layer on the index: the thumbnail figure of its
        best-scoring unit (the lowest channel when none is scored), among those whose PNG exists; ``None`` if none."""
        rows = read_rows(self.store, "figures", model=model, layer=layer, kind=self.thumbnail(model, layer))
        ranked = sorted((r for r in rows if r["channel"] >= 0), key=lambda r: _best_first(r["settings"], r["channel"]))
        return next(((r["channel"], r["png"]) for r in ranked if self.png_ok(r["png"])), None)

    def counts(self, model: str, layer: str) -> dict[str, int]:
        """How many units of a layer have a picture (its thumbnail kind; top contexts for a layer of MLP neurons or
        dictionary latents, whose pages have no pictures), dataset examples and statistics."""
        text = self.kind(model, layer) in (NEURONS.name, LATENTS.name)
        return {"top contexts" if text else "pictures": count_channels(self.store, "figures", model=model, layer=layer,
                                           kind=self.thumbnail(model, layer)),
                "examples": count_channels(self.store, "examples", model=model, layer=layer),
                "statistics": count_channels(self.store, "stats", model=model, layer=layer)}

    def png_ok(self, rel: Any) -> bool:
        """Whether ``rel`` is a store PNG path whose file exists (else the page shows no image)."""
        return is_png_path(rel) and (self.store.root / rel).is_file()

    def require_layer(self, model: str, layer: str) -> None:
        if (model, layer) not in self.layers:
            known = ", ".join(f"{m}/{name}" for m, name in self.layers) or "none"
            raise MechscopeError(f"the store {str(self.store.root)!r} has no layer {model}/{layer}; layers: {known}")


def number_text(x: Any) -> str:
    """A cell value as short text (floats to 4 significant digits, JSON for lists and dicts, at most 200 chars)."""
    if isinstance(x, bool) or x is None:
        return "" if x is None else str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.4g}" if math.isfinite(x) else str(x)
    text = json.dumps(x) if isinstance(x, (list, dict)) else str(x)
    return text if len(text) <= 200 else text[:199] + "…"


def stat_text(name: str, value: Any) -> str:
    """A statistic as text; quantiles as ``1%: v · 50%: v · ...``."""
    if name == "quantiles" and isinstance(value, dict):
        parts = []
        for q, v in value.items():
            try:
                parts.append(f"{100 * float(q):g}%: {number_text(v)}")
            except (TypeError, ValueError):
                parts.append(f"{q}: {number_text(v)}")
        return " · ".join(parts)
    return number_text(value)


def score_of(settings: Any) -> tuple[float | None, str]:
    """A figure's finite ``(score, score name)`` from its settings, or ``(None, "")``."""
    if not isinstance(settings, dict):
        return None, ""
    score = settings.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        return None, ""
    return float(score), str(settings.get("score_name") or "score")


def _best_first(settings: Any, channel: int) -> tuple[bool, float, int]:
    score, _ = score_of(settings)
    return score is None, -(score or 0.0), channel


def link_target(name: Any, layers: Iterable[str] = ()) -> tuple[str, int] | None:
    """The ``(layer, channel)`` page a circuit link names (``"mixed3a:12"``, ``"blocks.0.attn:1"``, parsed by
    ``mechscope.units.parse``); ``None`` for a name that is not a unit or head without a position.

    A store's layer may be named outside that grammar (any string): a name that does not parse is looked up among
    ``layers`` (the store's), as ``"<layer>:<channel>"`` with the longest such layer.
    """
    if not isinstance(name, str):
        return None
    try:
        parsed = parse(name)
    except MechscopeError:
        parsed = None
    if isinstance(parsed, Unit) and parsed.position is None:
        return parsed.layer, parsed.channel
    if isinstance(parsed, Head):
        return parsed.layer, parsed.head
    if parsed is None:
        for layer in sorted(layers, key=len, reverse=True):
            rest = name[len(layer) + 1:] if name.startswith(f"{layer}:") else ""
            if _CHANNEL.fullmatch(rest):
                return layer, int(rest)
    return None


__all__ = ["StoreView", "number_text", "stat_text", "score_of", "link_target"]
