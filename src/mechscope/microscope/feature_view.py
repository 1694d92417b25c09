"""What the Microscope stores and shows of an MLP neuron's or dictionary latent's evidence as text, not pictures:
highlighted token contexts, bar charts drawn with CSS, and a layer's one-line-per-unit list.

``microscope.features.build_features`` writes these payloads into ``figures`` rows' ``settings``; ``site.py``
turns them into page data with the ``*_data`` functions here (a store is data: each validates what it reads and
gives ``None`` for anything malformed, so the page then shows nothing of it).  Every text goes through Jinja's
autoescaping; the numbers become inline styles.

* ``"windows"`` (kind ``top_contexts``): ``[{"value", "row", "position", "peak", "tokens": [str], "acts":
  [number]}]`` per top context, with ``"scale"``: the unit's largest activation.  ``contexts_data`` gives each
  token its background alpha ``clamp(act / scale, 0, 1)`` (negative activations are not tinted) and marks the peak;
* ``"bars"`` (kinds ``firing_density``, ``activation_histogram``): ``{"edges": [n + 1], "counts": [n], "mark": bin or
  None, "label": str}``; ``bars_data`` gives each bar a height ``log(1 + count) / log(1 + max count)`` (one token
  in a thousand stays visible);
* ``"entries"`` (kind ``feature_list``, layer-wide): ``[[unit, frequency, top tokens, promoted tokens]]``; the
  layer page lists them with a search box (``templates/feature_list.js``).

Example::

    >>> w = window_payload([3, 4, 5], [0.0, 2.0, -1.0], peak=1, value=2.0, row=7, position=9, label=str)
    >>> w["tokens"], w["acts"], w["peak"]
    (['3', '4', '5'], [0.0, 2.0, -1.0], 1)
    >>> [(t["text"], t["alpha"], t["peak"]) for t in contexts_data({"windows": [w], "scale": 4.0})[0]["tokens"]]
    [('3', 0.0, False), ('4', 0.5, True), ('5', 0.0, False)]
    >>> [b["height"] for b in bars_data({"bars": bars_payload([0, 1, 2, 3], [0, 9, 99], mark=1)})["bars"]]
    [0.0, 0.5, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

SIGNIFICANT = 4
"""Significant digits kept of each activation in a context window (a tint differing by 1/1000 is invisible)."""


def token_label(text: str) -> str:
    """A token as visible text on a page: newlines and tabs as ``⏎`` / ``⇥`` (the spaces stay, shown as they are)."""
    return text.replace("\n", "⏎").replace("\t", "⇥")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def window_payload(token_ids: Sequence[int], acts: Sequence[float], *, peak: int, value: float, row: int,
                   position: int, label: Callable[[int], str]) -> dict[str, Any]:
    """One stored top context: the window's tokens as text (``label(id)``), the unit's activation on each
    (to ``SIGNIFICANT`` digits), the index of the peak token in the window, and its value / row / position."""
    return {"value": _rounded(value, SIGNIFICANT + 2), "row": int(row), "position": int(position),
            "peak": int(peak), "tokens": [label(int(t)) for t in token_ids], "acts": [_rounded(a) for a in acts]}


def _rounded(x: float, digits: int = SIGNIFICANT) -> float:
    return float(f"{float(x):.{digits}g}")


def contexts_data(settings: Any) -> list[dict[str, Any]] | None:
    """The top contexts of a ``top_contexts`` figure as page data: per context ``{"value", "row", "position",
    "tokens": [{"text", "alpha", "act", "peak"}]}``; ``None`` when the settings hold no valid ``"windows"``."""
    windows = settings.get("windows") if isinstance(settings, dict) else None
    scale = settings.get("scale") if isinstance(settings, dict) else None
    if not isinstance(windows, list) or not windows or not _finite(scale) or scale <= 0:
        return None
    out = []
    for w in windows:
        if not isinstance(w, dict):
            return None
        tokens, acts, peak = w.get("tokens"), w.get("acts"), w.get("peak")
        if not (isinstance(tokens, list) and isinstance(acts, list) and len(tokens) == len(acts)
                and all(isinstance(t, str) for t in tokens) and all(_finite(a) for a in acts)
                and isinstance(peak, int) and 0 <= peak < len(tokens) and _finite(w.get("value"))):
            return None
        out.append({"value": f"{w['value']:.4g}", "row": w.get("row"), "position": w.get("position"),
                    "tokens": [{"text": t, "alpha": round(min(max(a / scale, 0.0), 1.0), 3), "act": f"{a:.4g}",
                                "peak": i == peak} for i, (t, a) in enumerate(zip(tokens, acts))]})
    return out


def bars_payload(edges: Sequence[float], counts: Sequence[int], *, mark: int | None = None,
                 label: str = "") -> dict[str, Any]:
    """A stored bar chart: ``n`` bins (``n + 1`` edges), their counts, the bin to mark (or ``None``) and an axis
    label."""
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
            "mark": None if mark is None else int(mark), "label": label}


def bars_data(settings: Any) -> dict[str, Any] | None:
    """A stored bar chart as page data: ``{"bars": [{"height", "count", "range", "mark"}], "low", "high",
    "label"}``; ``None`` when the settings hold no valid ``"bars"``."""
    bars = settings.get("bars") if isinstance(settings, dict) else None
    if not isinstance(bars, dict):
        return None
    edges, counts, mark = bars.get("edges"), bars.get("counts"), bars.get("mark")
    if not (isinstance(edges, list) and isinstance(counts, list) and counts and len(edges) == len(counts) + 1
            and all(_finite(e) for e in edges) and all(isinstance(c, int) and c >= 0 for c in counts)):
        return None
    top = math.log1p(max(counts)) or 1.0
    return {"bars": [{"height": round(math.log1p(c) / top, 3), "count": c, "mark": i == mark,
                      "range": f"{edges[i]:.3g} … {edges[i + 1]:.3g}"} for i, c in enumerate(counts)],
            "low": f"{edges[0]:.3g}", "high": f"{edges[-1]:.3g}", "label": str(bars.get("label") or "")}


def list_data(settings: Any, href: Callable[[int], str | None]) -> list[dict[str, Any]] | None:
    """A layer's ``feature_list`` entries as page rows ``{"unit", "href", "frequency", "tokens", "promoted"}``
    (``href(unit)``: its page, ``None`` when the store has no such unit: the row is then left out); ``None`` when
    the settings hold no valid ``"entries"``."""
    entries = settings.get("entries") if isinstance(settings, dict) else None
    if not isinstance(entries, list):
        return None
    rows = []
    for e in entries:
        if not (isinstance(e, list) and len(e) == 4 and isinstance(e[0], int) and not isinstance(e[0], bool)
                and _finite(e[1]) and isinstance(e[2], str) and isinstance(e[3], str)):
            return None
        link = href(e[0])
        if link is not None:
            rows.append({"unit": e[0], "href": link, "frequency": f"{100 * e[1]:.3g}%", "tokens": e[2],
                         "promoted": e[3]})
    return rows


__all__ = ["SIGNIFICANT", "token_label", "window_payload", "contexts_data", "bars_payload", "bars_data", "list_data"]
