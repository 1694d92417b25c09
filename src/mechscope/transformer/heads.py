"""Head detectors and head ablation for attention-only transformers (``mechscope.zoo.attn_only``).

On a batch of repeated random tokens ``[BOS] + r + r`` (``r`` has ``seq_len`` tokens, so a sequence has
``1 + 2 * seq_len`` positions), three kinds of head show up as diagonals of the attention pattern
(*A Mathematical Framework for Transformer Circuits*, Elhage et al. 2021; *In-context Learning and Induction
Heads*, Olsson et al. 2022):

* previous-token heads: query ``q`` attends to key ``q - 1``;
* duplicate-token heads: a query in the second copy attends to the same token in the first copy (key
  ``q - seq_len``);
* induction heads: a query in the second copy attends to the token *after* its earlier occurrence (key
  ``q - seq_len + 1``).

Each score is the mean attention weight on that diagonal, averaged over the batch and the queries named in
each function, so it lies in ``[0, 1]`` and is 1 exactly when the head puts all its attention there.

``ablate_head`` zero- or mean-ablates one head's ``hook_z`` during forwards, and ``ablation_effect`` records
every head's scores and the loss before and after — the check that ablating a layer-0 previous-token head
collapses a layer-1 induction head's score.

>>> import torch
>>> from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
>>> model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=2, d_model=16, n_heads=2, d_head=4, n_ctx=11,
...                                            d_vocab=30), seed=0)
>>> tokens = repeated_tokens(30, seq_len=5, batch=3, bos=0, low=1)
>>> tokens.shape, bool((tokens[:, 1:6] == tokens[:, 6:]).all()), int(tokens[:, 1:].min()) >= 1
(torch.Size([3, 11]), True, True)
>>> attention_patterns(model, tokens).shape
torch.Size([2, 3, 2, 11, 11])
>>> scores = head_scores(model, tokens)
>>> sorted(scores), tuple(scores["induction"].shape)
(['duplicate_token', 'induction', 'previous_token'], (2, 2))
>>> with ablate_head(model, 1, 0):
...     z = model.run_with_cache(tokens, ["blocks.1.attn.hook_z"])[1]["blocks.1.attn.hook_z"]
>>> bool((z[:, :, 0] == 0).all()), bool((z[:, :, 1] != 0).any())
(True, True)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from mechscope.errors import MechscopeError
from mechscope.transformer.models import add_forward_hook, run_with_cache
from mechscope.units import Head

KINDS = ("previous_token", "induction", "duplicate_token")
DEFAULT_THRESHOLDS: dict[str, float] = {"previous_token": 0.4, "induction": 0.4, "duplicate_token": 0.4}
DEFAULT_SEQ_LEN = 50   # longest repeat of the default tokens (shortened to fit n_ctx)
DEFAULT_BATCH = 8


# ---- tokens ---------------------------------------------------------------------------------------------------


def repeated_tokens(d_vocab: int, seq_len: int, batch: int, *, bos: int | None = None, seed: int = 0,
                    low: int = 0) -> Tensor:
    """``[batch, 1 + 2 * seq_len]`` long: ``[BOS] + r + r`` per row, ``r`` drawn uniformly (with replacement)
    from ``[low, d_vocab)`` by a ``torch.Generator`` seeded with ``seed`` (same arguments → same tokens).

    ``low``: ids below it are special (BOS, padding …) and never drawn for ``r``.  ``bos=None`` uses id 0."""
    d_vocab, seq_len, batch, low = int(d_vocab), int(seq_len), int(batch), int(low)
    bos = 0 if bos is None else int(bos)
    if seq_len < 1 or batch < 1:
        raise MechscopeError(f"seq_len and batch must be >= 1, got seq_len={seq_len}, batch={batch}")
    if not 0 <= low < d_vocab:
        raise MechscopeError(f"low must lie in [0, d_vocab={d_vocab}) so some ids remain, got low={low}")
    if not 0 <= bos < d_vocab:
        raise MechscopeError(f"bos must be a token id in [0, {d_vocab}), got {bos}")
    g = torch.Generator().manual_seed(int(seed))
    r = torch.randint(low, d_vocab, (batch, seq_len), generator=g)
    return torch.cat([torch.full((batch, 1), bos, dtype=torch.long), r, r], dim=1)


def default_tokens(model: Any) -> Tensor:
    """The tokens the detectors use when given none: ``repeated_tokens(model.cfg.d_vocab, seq_len, 8, bos=0,
    seed=0)`` with ``seq_len = min(50, (n_ctx - 1) // 2)`` so that ``1 + 2 * seq_len <= n_ctx``."""
    seq_len = min(DEFAULT_SEQ_LEN, (int(model.cfg.n_ctx) - 1) // 2)
    if seq_len < 1:
        raise MechscopeError(f"n_ctx = {model.cfg.n_ctx} is too short for [BOS] + r + r (needs n_ctx >= 3)")
    return repeated_tokens(model.cfg.d_vocab, seq_len, DEFAULT_BATCH, bos=0, seed=0)


PROBE_ROWS = 16   # rows of the probe tokens the organisms' card and ``mechscope heads`` score on
PROBE_SEED = 1


def probe_tokens(model: Any, *, bos: int = 0, low: int = 0) -> Tensor:
    """The tokens the attention-only organisms are probed on (their training card) and ``mechscope heads``
    scores: ``repeated_tokens(d_vocab, min(50, (n_ctx - 1) // 2), 16, bos=bos, seed=1, low=low)``
    (``low``: the first id that is not special)."""
    seq_len = min(DEFAULT_SEQ_LEN, (int(model.cfg.n_ctx) - 1) // 2)
    return repeated_tokens(model.cfg.d_vocab, seq_len, PROBE_ROWS, bos=bos, seed=PROBE_SEED, low=low)


def probe_ids(tokenizer: Any, d_vocab: int) -> tuple[int, int]:
    """``(bos, low)`` for ``probe_tokens`` with a model's tokenizer: its BOS id (0 without one) and the first id
    above its special ids (``bos_id``, ``eos_id``, ``pad_id``), so that ``r`` never draws a special token."""
    specials = [getattr(tokenizer, a, None) for a in ("bos_id", "eos_id", "pad_id")] if tokenizer is not None else []
    specials = [int(s) for s in specials if s is not None]
    low = max(specials) + 1 if specials and max(specials) + 1 < d_vocab else 0
    bos = getattr(tokenizer, "bos_id", None) if tokenizer is not None else None
    return (0 if bos is None else int(bos)), low


def probe_scores(model: Any, *, bos: int = 0, low: int = 0) -> dict[str, Tensor]:
    """``head_scores`` on ``probe_tokens(model, bos=bos, low=low)``: ``{kind: [n_layers, n_heads]}``."""
    return head_scores(model, probe_tokens(model, bos=bos, low=low))


def _seq_len(tokens: Tensor) -> int:
    """``seq_len`` of ``[BOS] + r + r`` tokens, checking the repeat."""
    if tokens.dim() != 2 or tokens.shape[1] < 3 or tokens.shape[1] % 2 == 0:
        raise MechscopeError(f"repeated tokens must be [batch, 1 + 2 * seq_len] (odd length >= 3), got "
                             f"{tuple(tokens.shape)}; make them with repeated_tokens(...)")
    s = (tokens.shape[1] - 1) // 2
    if not torch.equal(tokens[:, 1:1 + s], tokens[:, 1 + s:]):
        raise MechscopeError("tokens are not [BOS] + r + r: positions 1..seq_len differ from the second copy; "
                             "make them with repeated_tokens(...)")
    return s


# ---- patterns and scores --------------------------------------------------------------------------------------


def attention_patterns(model: Any, tokens: Tensor | None = None) -> Tensor:
    """Every head's attention pattern, ``[n_layers, batch, n_heads, query, key]``, from one forward (no grad)
    reading each ``blocks.{l}.attn.hook_pattern``.  ``tokens`` ``[batch, pos]``; default ``default_tokens``."""
    tokens = default_tokens(model) if tokens is None else tokens
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = run_with_cache(model, tokens, names)
    return torch.stack([cache[n] for n in names])


def _diagonal_score(patterns: Tensor, offset: int, first_query: int) -> Tensor:
    """Mean of ``patterns[..., q, q - offset]`` over batch and queries ``q >= first_query`` → ``[L, H]``."""
    n = patterns.shape[-1]
    q = torch.arange(first_query, n)
    on_diag = patterns[..., q, q - offset]             # [L, batch, H, n_queries]
    return on_diag.mean(dim=(1, 3))


def _scores_from_patterns(patterns: Tensor, seq_len: int | None) -> dict[str, Tensor]:
    out = {"previous_token": _diagonal_score(patterns, 1, 1)}
    if seq_len is not None:
        out["duplicate_token"] = _diagonal_score(patterns, seq_len, 1 + seq_len)
        out["induction"] = _diagonal_score(patterns, seq_len - 1, 1 + seq_len)
    return out


def previous_token_scores(model: Any, tokens: Tensor | None = None) -> Tensor:
    """``[n_layers, n_heads]``: mean attention from query ``q`` to key ``q - 1`` over queries ``q >= 1`` and the
    batch.  Query 0 (BOS) is excluded — it has no previous token; key 0 (BOS) *is* counted, as the previous
    token of query 1.  Any ``[batch, pos]`` tokens work; default ``default_tokens(model)``."""
    return _scores_from_patterns(attention_patterns(model, tokens), None)["previous_token"]


def duplicate_token_scores(model: Any, tokens: Tensor | None = None) -> Tensor:
    """``[n_layers, n_heads]``: on ``[BOS] + r + r`` tokens, mean attention from each query ``q`` of the second
    copy (``1 + seq_len <= q <= 2 seq_len``) to its earlier occurrence ``q - seq_len``, over those queries and
    the batch.  Default tokens ``default_tokens(model)``; tokens that are not a repeat are refused."""
    tokens = default_tokens(model) if tokens is None else tokens
    return _scores_from_patterns(attention_patterns(model, tokens), _seq_len(tokens))["duplicate_token"]


def induction_scores(model: Any, tokens: Tensor | None = None) -> Tensor:
    """``[n_layers, n_heads]``: on ``[BOS] + r + r`` tokens, mean attention from each query ``q`` of the second
    copy (``1 + seq_len <= q <= 2 seq_len``) to the token after its earlier occurrence, key
    ``q - seq_len + 1``, over those queries and the batch.  Default tokens ``default_tokens(model)``."""
    tokens = default_tokens(model) if tokens is None else tokens
    return _scores_from_patterns(attention_patterns(model, tokens), _seq_len(tokens))["induction"]


def head_scores(model: Any, tokens: Tensor | None = None) -> dict[str, Tensor]:
    """``{"previous_token", "duplicate_token", "induction": [n_layers, n_heads]}`` from one forward on
    ``[BOS] + r + r`` tokens (default ``default_tokens(model)``) — the input of ``classify_heads``."""
    tokens = default_tokens(model) if tokens is None else tokens
    return _scores_from_patterns(attention_patterns(model, tokens), _seq_len(tokens))


def classify_heads(scores: Mapping[str, Tensor], thresholds: Mapping[str, float] | None = None
                   ) -> list[dict[str, Any]]:
    """Label heads from ``scores`` ``{kind: [n_layers, n_heads]}`` (e.g. ``head_scores``).

    Rule: head ``L.H`` is of kind ``K`` iff ``scores[K][L, H] >= thresholds[K]`` (defaults ``DEFAULT_THRESHOLDS``:
    0.4 for each of previous_token, induction, duplicate_token; ``thresholds`` overrides per kind).  A head
    can be several kinds: there is one row per (head, kind) that passes, ordered by layer, head, then kind in
    the order of ``scores``; heads passing nothing get no row.  Each row is ``{"head": "L.H", "layer", "index",
    "kind", <every kind in scores>: float}``."""
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    missing = [k for k in scores if k not in limits]
    if missing:
        raise MechscopeError(f"no threshold for score kind(s) {missing}; pass thresholds={{kind: value}}")
    shapes = {tuple(v.shape) for v in scores.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise MechscopeError(f"every score must be [n_layers, n_heads] with one shape, got {sorted(shapes)}")
    rows: list[dict[str, Any]] = []
    n_layers, n_heads = next(iter(shapes)) if shapes else (0, 0)
    for layer in range(n_layers):
        for h in range(n_heads):
            values = {k: float(v[layer, h]) for k, v in scores.items()}
            for kind, value in values.items():
                if value >= limits[kind]:
                    rows.append({"head": Head.at(layer, h).short, "layer": layer, "index": h, "kind": kind, **values})
    return rows


# ---- ablation and loss ----------------------------------------------------------------------------------------


def _check_head(model: Any, layer: int, head: int) -> None:
    if not 0 <= layer < model.cfg.n_layers or not 0 <= head < model.cfg.n_heads:
        raise MechscopeError(f"no head {Head.at(layer, head).short}: the model has layers 0..{model.cfg.n_layers - 1} and heads "
                             f"0..{model.cfg.n_heads - 1}")


@contextmanager
def ablate_head(model: Any, layer: int, head: int, *, kind: str = "zero",
                mean_over: Tensor | None = None) -> Iterator[Tensor]:
    """While the ``with`` block runs, every forward replaces head ``layer.head``'s ``hook_z``
    ``[batch, pos, head, d_head]`` slice by zeros (``kind="zero"``) or by its mean over batch and positions on
    the reference tokens ``mean_over`` ``[batch, pos]`` (``kind="mean"``; default ``default_tokens(model)``,
    computed once on entry).  Yields the replacement value ``[d_head]``.  The hook is removed on exit, also on
    an exception.  Other heads, and the pattern of the ablated head, are untouched."""
    _check_head(model, layer, head)
    attn = model.blocks[layer].attn
    if kind == "zero":
        value = torch.zeros(model.cfg.d_head, dtype=attn.W_O.dtype, device=attn.W_O.device)
    elif kind == "mean":
        ref = default_tokens(model) if mean_over is None else mean_over
        name = f"blocks.{layer}.attn.hook_z"
        with torch.no_grad():
            value = run_with_cache(model, ref, [name])[1][name][:, :, head].mean(dim=(0, 1))
    else:
        raise MechscopeError(f"kind must be 'zero' or 'mean', not {kind!r}")

    def replace(z: Tensor) -> Tensor:
        z = z.clone()
        z[:, :, head] = value.to(z.dtype)
        return z

    handle = add_forward_hook(attn.hook_z, replace)
    try:
        yield value
    finally:
        handle.remove()


def second_repeat_positions(seq_len: int) -> range:
    """The predicting positions of ``[BOS] + r + r`` whose next token an induction head can infer: logits at
    ``p`` for ``1 + seq_len <= p <= 2 seq_len - 1`` predict tokens ``2 + seq_len .. 2 seq_len`` of the second
    copy (its first token, predicted at ``p = seq_len``, is not inferable and is left out)."""
    return range(1 + seq_len, 2 * seq_len)


def _loss_from_logits(logits: Tensor, tokens: Tensor, positions: slice | Sequence[int] | Tensor | None) -> Tensor:
    n = tokens.shape[1]
    if n < 2:
        raise MechscopeError(f"next-token loss needs at least 2 positions, got {n}")
    idx = torch.arange(n - 1)
    if positions is not None:
        if isinstance(positions, slice):
            idx = idx[positions]
        else:
            idx = torch.as_tensor(list(positions) if isinstance(positions, range) else positions, dtype=torch.long)
            if idx.dim() != 1 or (idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n - 1)):
                raise MechscopeError(f"positions must be predicting positions in [0, {n - 1}), got "
                                     f"{idx.tolist()}")
        if idx.numel() == 0:
            raise MechscopeError("positions selects no predicting position")
    idx = idx.to(logits.device)
    lp = logits[:, idx].float().log_softmax(-1)
    return -lp.gather(-1, tokens[:, idx + 1].to(logits.device)[..., None]).mean()


def loss(model: Any, tokens: Tensor, *, positions: slice | Sequence[int] | Tensor | None = None) -> Tensor:
    """Mean next-token cross entropy (nats, a 0-d tensor that keeps the graph): logits at position ``p`` scored
    against ``tokens[:, p + 1]``, averaged over the batch and the predicting positions ``positions`` (a slice, or
    indices in ``[0, pos - 1)``; default all ``pos - 1``)."""
    return _loss_from_logits(model(tokens), tokens, positions)


def ablation_effect(model: Any, layer: int, head: int, tokens: Tensor | None = None, *, kind: str = "zero",
                    mean_over: Tensor | None = None) -> dict[str, Any]:
    """Every head's scores and the loss, without and with head ``layer.head`` ablated (``ablate_head``; for
    ``kind="mean"`` the reference is ``mean_over``, default the same ``tokens``).

    ``tokens``: ``[BOS] + r + r`` (default ``default_tokens(model)``).  Returns ``{"head": "L.H", "kind",
    "loss_before", "loss_after"`` (floats: mean next-token cross entropy over the second repeat only,
    ``second_repeat_positions``), ``"full_loss_before", "full_loss_after"`` (over all positions), and
    ``"previous_token_before" / "_after", "induction_before" / "_after", "duplicate_token_before" / "_after"``
    ``[n_layers, n_heads]}``.  Two forwards, no grad."""
    tokens = default_tokens(model) if tokens is None else tokens
    s = _seq_len(tokens)
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(model.cfg.n_layers)]
    out: dict[str, Any] = {"head": Head.at(layer, head).short, "kind": kind}

    def measure(suffix: str) -> None:
        with torch.no_grad():
            logits, cache = run_with_cache(model, tokens, names)
        for k, v in _scores_from_patterns(torch.stack([cache[n] for n in names]), s).items():
            out[f"{k}_{suffix}"] = v
        out[f"loss_{suffix}"] = float(_loss_from_logits(logits, tokens, second_repeat_positions(s)))
        out[f"full_loss_{suffix}"] = float(_loss_from_logits(logits, tokens, None))

    measure("before")
    with ablate_head(model, layer, head, kind=kind, mean_over=tokens if mean_over is None else mean_over):
        measure("after")
    return out
