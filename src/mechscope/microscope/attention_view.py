"""The interactive attention view of the Microscope's head pages: the payload stored per layer of heads, and what a
page embeds of it.

``microscope.heads.build_heads`` writes, per layer ``blocks.{l}.attn``, one layer-wide ``figures`` row (``channel =
-1``, kind ``kinds.ATTENTION_VIEW``, no PNG) whose ``settings`` hold, besides the heads' ``"build"`` / ``"k"`` /
``"tokens"``, the payload made by ``attention_payload``:

* ``"labels"``: the sample text's tokens as visible text (``[n]`` strings, the heatmap's tick labels);
* ``"patterns"``: ``[heads][query][key]`` attention weights rounded to ``DECIMALS`` decimals, each query's row
  without its trailing zeros (a causal pattern's row ``q`` has at most ``q + 1`` entries: half the size);
* ``"decimals"``: ``DECIMALS``.

A page embeds ``page_data`` of it as JSON in a ``<script type="application/json">`` block (through Jinja's
``tojson``, which writes ``<``, ``>``, ``&`` and ``'`` as ``\\u`` escapes, so no token can end the block); the
tokens themselves are rendered as escaped text, and ``templates/attention.js`` tints them on hover or click.

Example::

    >>> import torch
    >>> p = torch.tensor([[[1.0, 0.0], [0.12345, 0.87655]]])          # [heads 1, query 2, key 2]
    >>> payload = attention_payload(p, ["<b>", "x"])
    >>> payload["patterns"]
    [[[1], [0.123, 0.877]]]
    >>> torch.allclose(dense_patterns(payload), p, atol=0.5e-3)
    True
    >>> page_data(payload, head=0, heads=["blocks.0.attn:0"])["head"]
    0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mechscope.errors import MechscopeError

DECIMALS = 3
"""Decimals kept of each attention weight in the store and on the pages (a weight is shown as a tint: 1/1000 is
far below what the eye tells apart, and it keeps a head page of a 48-token sample near 25 kB)."""


def _rounded(row: list[int]) -> list[float | int]:
    """Integer thousandths -> numbers (``0.123``; whole numbers as ints), trailing zeros dropped."""
    scale = 10 ** DECIMALS
    while row and row[-1] == 0:
        row.pop()
    return [v // scale if v % scale == 0 else v / scale for v in row]


def attention_payload(patterns: Tensor, labels: Sequence[str]) -> dict[str, Any]:
    """The stored payload of a layer's attention view (see the module docstring).

    Args:
        patterns: ``[heads, query, key]`` attention weights (rows of a softmax: in ``[0, 1]``), ``query == key ==
            len(labels)``.
        labels: the tokens of the sample text as visible text, ``[n]``.

    Returns:
        ``{"labels": [n] str, "patterns": [heads][query][<= key] numbers, "decimals": DECIMALS}``.
    """
    if not isinstance(patterns, Tensor) or patterns.ndim != 3:
        raise MechscopeError(f"patterns must be a tensor [heads, query, key], got "
                             f"{tuple(patterns.shape) if isinstance(patterns, Tensor) else type(patterns).__name__}")
    heads, n_q, n_k = patterns.shape
    if not (heads and n_q == n_k == len(labels)):
        raise MechscopeError(f"patterns {tuple(patterns.shape)} do not match the {len(labels)} tokens: expected "
                             f"[heads >= 1, {len(labels)}, {len(labels)}]")
    if not all(isinstance(s, str) for s in labels):
        raise MechscopeError("labels must be strings (the tokens as text)")
    p = patterns.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(p).all()) or float(p.min()) < 0 or float(p.max()) > 1 + 1e-6:
        raise MechscopeError("attention weights must be finite and in [0, 1] (rows of a softmax)")
    ints = torch.round(p.clamp(0, 1) * 10 ** DECIMALS).to(torch.int64).tolist()
    return {"labels": list(labels), "patterns": [[_rounded(row) for row in head] for head in ints],
            "decimals": DECIMALS}


def _valid(settings: Any) -> tuple[list[str], list[list[list[float]]]] | None:
    """``(labels, patterns)`` of a stored payload, or ``None`` when it is not one (a store is data: never trust it)."""
    if not isinstance(settings, dict):
        return None
    labels, patterns = settings.get("labels"), settings.get("patterns")
    if not (isinstance(labels, list) and labels and all(isinstance(s, str) for s in labels)
            and isinstance(patterns, list) and patterns):
        return None
    n = len(labels)
    for head in patterns:
        if not isinstance(head, list) or len(head) != n:
            return None
        for row in head:
            if not isinstance(row, list) or len(row) > n or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in row):
                return None
    return labels, patterns


def dense_patterns(settings: Any) -> Tensor:
    """The ``[heads, query, key]`` float32 patterns of a stored payload (its trimmed zeros put back)."""
    valid = _valid(settings)
    if valid is None:
        raise MechscopeError("not an attention view payload: expected settings with 'labels' (non-empty list of "
                             "str) and 'patterns' ([heads][tokens][<= tokens] numbers)")
    labels, patterns = valid
    out = torch.zeros(len(patterns), len(labels), len(labels))
    for h, head in enumerate(patterns):
        for q, row in enumerate(head):
            out[h, q, :len(row)] = torch.tensor(row, dtype=torch.float32)
    return out


def page_data(settings: Any, head: int, heads: Sequence[str]) -> dict[str, Any] | None:
    """What a page embeds of a stored payload: ``{"labels", "patterns", "head", "heads"}`` with ``head`` the
    selected head's index and ``heads`` their names (one per pattern); ``None`` when ``settings`` is not a valid
    payload or does not have one pattern per name (the page then shows no view)."""
    valid = _valid(settings)
    if valid is None or len(valid[1]) != len(heads):
        return None
    labels, patterns = valid
    return {"labels": labels, "patterns": patterns, "head": head if 0 <= head < len(heads) else 0,
            "heads": list(heads)}


__all__ = ["DECIMALS", "attention_payload", "dense_patterns", "page_data"]
