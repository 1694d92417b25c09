"""Fill a results store with the Microscope's pages of a transformer's attention heads: one page per head.

``build_heads`` writes, for an attention-only transformer (``mechscope.zoo.attn_only.AttnOnlyTransformer``, or any
model with ``cfg.n_layers / n_heads``, ``blocks[l].attn`` TransformerLens-style weights and ``run_with_cache``),
the rows that ``mechscope.microscope.site`` reads (see its store contract).  Layer ``l`` is named
``blocks.{l}.attn`` (the hook-name prefix of its heads) and its units are the heads, ``channel = head index``:

* a ``layers`` row per layer: ``channels = n_heads``, ``settings = {"kind": "heads", "thumbnail": "attention",
  "n_layers", "n_heads", "d_model", "d_head", "d_vocab", "n_ctx"}``;
* a layer-wide (``channel = -1``) ``"attention_view"`` row per layer, no PNG: every head's pattern on the sample
  text with its tokens (``microscope.attention_view.attention_payload``), read by the head pages' interactive view;
* per head, ``figures`` rows (every ``settings`` also holds ``"build"``, ``"k"`` and ``"tokens"``, see below):

  - ``"attention"``: heatmap of the head's pattern ``[query, key]`` on the sample text (at most ``MAX_TOKENS``
    tokens, BOS first when the tokenizer has one, tokens as tick labels); without a tokenizer, on one row of
    repeated random tokens ``[BOS] r r`` (said in its ``note``).  ``score`` / ``score_name``: the head's strongest
    detector score and its name, so the layer grid sorts heads by it;
  - ``"head_scores"``: bar chart of the previous-token, induction and duplicate-token scores
    (``transformer.heads.head_scores``) on ``transformer.heads.PROBE_ROWS`` rows of ``[BOS] r r`` (``r``: up to 50 random
    non-special tokens, seed ``PROBE_SEED``, ``probe_tokens``: the probe of the organisms' cards), a ``table`` of them, and the
    ``classify_heads`` kinds in ``note`` when the head passes a threshold;
  - ``"qk_pairs"`` / ``"ov_pairs"`` (no PNG): a ``table`` of the ``k`` largest entries of the head's full QK
    circuit (query token ← key token) and full OV circuit (source token → logit token), LayerNorm folded first;
    tokens are ``repr``-escaped strings with a tokenizer, ids without.  ``ov_pairs`` has ``score`` = the head's
    eigenvalue copying score (``score_name = "copying"``) when it is finite;
  - ``"composition"`` (heads of layers >= 1): ``units`` links ``[{"unit": "blocks.{l0}.attn:{h0}", "weight"}]`` to
    every head of earlier layers, sorted by ``weight`` = the largest of its Q-, K- and V-composition scores, a
    ``table`` of the three scores, a heatmap of them and the random baseline (``composition_baseline``) in
    ``note``.

Incremental: ``settings["build"]`` is a digest of everything the rows depend on (the weights, the sample tokens,
``k``, the probe and ``FORMAT``); a head whose rows all exist with the same digest is skipped (a layer whose
``attention_view`` row is missing or stale gets it rewritten, without its heads).  Each layer is
written in one ``transaction`` (PNGs first, then rows), so an interruption leaves no half-written layer.

Example::

    >>> import tempfile
    >>> from mechscope.store import open_store, read_rows
    >>> from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
    >>> model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=2, d_model=16, n_heads=2, d_head=4, n_ctx=16,
    ...                                            d_vocab=30), seed=0)
    >>> out = tempfile.mkdtemp()
    >>> build_heads(model, "tiny", out, k=3, progress=False)
    {'built': 4, 'skipped': 0}
    >>> build_heads(model, "tiny", out, k=3, progress=False)
    {'built': 0, 'skipped': 4}
    >>> with open_store(out) as store:
    ...     row, = read_rows(store, "figures", model="tiny", layer="blocks.1.attn", channel=0, kind="composition")
    >>> sorted(u["unit"] for u in row["settings"]["units"])
    ['blocks.0.attn:0', 'blocks.0.attn:1']
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mechscope.devices import model_device
from mechscope.errors import MechscopeError
from mechscope.microscope.attention_view import attention_payload
from mechscope.microscope.kinds import (ATTENTION, ATTENTION_VIEW, COMPOSITION, HEAD_KINDS, HEAD_SCORES, HEADS,
                                        OV_PAIRS, QK_PAIRS)
from mechscope.plots import agg_figure, png_of
from mechscope.store import Store, open_store, put_png, put_rows, read_rows, transaction
from mechscope.transformer.circuits import (composition_baseline, composition_scores, copying_scores, ov_circuit,
                                            qk_circuit, top_token_pairs)
from mechscope.transformer.heads import (KINDS, PROBE_SEED, attention_patterns, classify_heads, head_scores, probe_ids,
                                         probe_tokens, repeated_tokens)
from mechscope.zoo.attn_only import with_layer_norm_folded

DEFAULT_TEXT = "The quick brown fox jumps over the dog.\nThe quick brown fox jumps over the dog.\n"
"""The sample text of the ``attention`` figures when a tokenizer is given and ``text`` is not (it repeats, so
induction heads show their diagonal)."""
MAX_TOKENS = 48         # longest sample shown, so that the tick labels stay legible
BASELINE_SAMPLES = 200  # random head pairs of the composition baseline
FORMAT = 1              # bump when the rows written change, so that stores are rebuilt


def _check_model(model: Any) -> Any:
    try:
        cfg = model.cfg
        n_layers, n_heads = int(cfg.n_layers), int(cfg.n_heads)
        ok = len(model.blocks) == n_layers and n_heads > 0 and callable(model.run_with_cache)
    except (AttributeError, TypeError, ValueError):
        ok = False
    if not ok:
        raise MechscopeError(
            f"{type(model).__name__} is not an attention-only transformer: build_heads needs cfg.n_layers, "
            "cfg.n_heads, blocks[l].attn and run_with_cache, e.g. mechscope.zoo.attn_only.AttnOnlyTransformer "
            "or mechscope.zoo.registry.load('attn-only-2l')")
    return cfg


def _label(s: str) -> str:
    """A token as a visible label: repr-escaped (newlines, spaces at the ends), without the quotes."""
    return repr(s)[1:-1]


def _sample(cfg: Any, tokenizer: Any, text: str | None) -> tuple[Tensor, list[str], str]:
    """``(tokens [1, n], tick labels, note)`` of the attention figures (``text`` default ``DEFAULT_TEXT``)."""
    if tokenizer is None:
        if text is not None:
            raise MechscopeError("text needs a tokenizer to be turned into tokens; pass tokenizer=... (e.g. "
                                 "mechscope.zoo.registry.bundled_tokenizer('attn-only-2l')) or leave text=None")
        seq_len = min((MAX_TOKENS - 1) // 2, (int(cfg.n_ctx) - 1) // 2)
        tokens = repeated_tokens(cfg.d_vocab, seq_len, 1, bos=0, seed=PROBE_SEED)
        note = (f"No tokenizer: the pattern is on repeated random tokens [BOS] r r (r: {seq_len} tokens); "
                "tick labels are token ids.")
        return tokens, [str(i) for i in tokens[0].tolist()], note
    text = DEFAULT_TEXT if text is None else text
    ids = [int(i) for i in tokenizer.encode(text)]
    if not ids:
        raise MechscopeError(f"the sample text {text!r} has no tokens; pass a non-empty text")
    bos = getattr(tokenizer, "bos_id", None)
    ids = ([int(bos)] if bos is not None else []) + ids
    limit = min(MAX_TOKENS, int(cfg.n_ctx))
    truncated, ids = len(ids) > limit, ids[:limit]
    bad = [i for i in ids if not 0 <= i < cfg.d_vocab]
    if bad:
        raise MechscopeError(f"the tokenizer gives ids {bad[:5]} outside the model's vocabulary 0..{cfg.d_vocab - 1}; "
                             "is it the model's own tokenizer?")
    labels = [_label(tokenizer.decode([i])) for i in ids]
    shown = tokenizer.decode(ids[1:] if bos is not None else ids)
    note = f"Sample text ({len(ids)} tokens{', truncated' if truncated else ''}): {shown!r}"
    return torch.tensor([ids]), labels, note


def _digest(model: Any, **fields: Any) -> str:
    h = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------- figures

def _attention_png(pattern: Tensor, labels: list[str], title: str) -> bytes:
    """Heatmap of one head's pattern ``[query, key]`` with token tick labels."""
    n = len(labels)
    side = max(3.0, 0.13 * n + 1.5)
    fig = agg_figure(side, side, layout=None)  # fixed margins: tight layout is slow with ~100 tick labels
    fig.subplots_adjust(left=1.0 / side, bottom=1.0 / side, right=1 - 0.1 / side, top=1 - 0.35 / side)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(pattern.float().numpy(), cmap="Blues", vmin=0, vmax=1)
    ticks = [s.replace("$", r"\$") for s in labels]  # no mathtext
    ax.set_xticks(range(n), ticks, rotation=90, fontsize=6)
    ax.set_yticks(range(n), ticks, fontsize=6)
    ax.set_xlabel("key", fontsize=8)
    ax.set_ylabel("query", fontsize=8)
    ax.set_title(title, fontsize=8)
    return png_of(fig)


def _scores_png(values: dict[str, float], title: str, threshold: float = 0.4) -> bytes:
    fig = agg_figure(3.0, 2.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(values)), list(values.values()), color="#4c72b0")
    ax.set_xticks(range(len(values)), [k.replace("_", "\n") for k in values], fontsize=7)
    ax.axhline(threshold, color="grey", linewidth=0.6, linestyle="--")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=8)
    return png_of(fig)


def _composition_png(scores: Tensor, heads: list[str], title: str) -> bytes:
    """Heatmap of ``scores [3, n_earlier_heads]`` (rows Q, K, V)."""
    fig = agg_figure(max(2.5, 0.35 * len(heads) + 1.5), 2.0)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(scores.float().numpy(), cmap="viridis", vmin=0, aspect="auto")
    ax.set_xticks(range(len(heads)), heads, rotation=90, fontsize=6)
    ax.set_yticks(range(3), ["Q", "K", "V"], fontsize=7)
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return png_of(fig)


def _pairs_table(circuit: Any, k: int, tokenizer: Any, names: tuple[str, str]) -> dict[str, Any]:
    pairs = top_token_pairs(circuit, k, tokenizer)
    cell = (lambda tok, i: repr(tok)) if tokenizer is not None else (lambda tok, i: i)
    return {"columns": [*names, "value"],
            "rows": [[cell(p.row_token, p.row), cell(p.col_token, p.col), float(p.value)] for p in pairs]}


# ---------------------------------------------------------------------------------------------------- build

def build_heads(model: Any, model_name: str, out_dir: str | os.PathLike | Store, *, tokenizer: Any = None,
                text: str | None = None, k: int = 10, progress: bool = True) -> dict[str, int]:
    """Write one Microscope page per attention head of ``model`` into the store ``out_dir``.

    Args:
        model: an attention-only transformer (see the module docstring); not modified.
        model_name: the ``model`` key of the rows (e.g. ``"attn-only-2l"``).
        out_dir: the store folder (created if need be), or an open ``Store``.
        tokenizer: the model's tokenizer (``encode(str) -> ids``, ``decode(ids) -> str``, optional ``bos_id``):
            decodes the sample text and the QK/OV tokens.  ``None``: token ids, and the attention figures show
            repeated random tokens.
        text: the sample text of the attention figures (default ``DEFAULT_TEXT``; needs ``tokenizer``).
        k: token pairs per QK / OV table (>= 1).
        progress: show a progress bar over the layers.

    Returns:
        ``{"built": heads whose rows were written, "skipped": heads already up to date}``.
    """
    cfg = _check_model(model)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise MechscopeError(f"k is the number of QK/OV token pairs per head, an integer >= 1 (got {k!r})")
    if text is not None and (not isinstance(text, str) or not text):
        raise MechscopeError(f"text must be a non-empty string (the sample text of the attention figures), "
                             f"got {text!r}; leave it None for the default")
    if isinstance(out_dir, Store):
        return _build(out_dir, model, cfg, model_name, tokenizer, text, k, progress)
    with open_store(out_dir) as store:
        return _build(store, model, cfg, model_name, tokenizer, text, k, progress)


def _build(store: Store, model: Any, cfg: Any, model_name: str, tokenizer: Any, text: str | None, k: int,
           progress: bool) -> dict[str, int]:
    n_layers, n_heads = int(cfg.n_layers), int(cfg.n_heads)
    sample, labels, sample_note = _sample(cfg, tokenizer, text)
    bos, low = probe_ids(tokenizer, cfg.d_vocab)
    probe = probe_tokens(model, bos=bos, low=low)
    build = _digest(model, format=FORMAT, sample=sample.tolist(), labels=labels, k=k, probe=probe.tolist())
    common = {"build": build, "k": k, "tokens": int(sample.shape[1])}
    layer_settings = {"kind": HEADS.name, "thumbnail": ATTENTION.name, "n_layers": n_layers, "n_heads": n_heads,
                      **{key: int(getattr(cfg, key)) for key in ("d_model", "d_head", "d_vocab", "n_ctx")}}
    plan: list[tuple[int, list[int]]] = []  # (layer, heads to build) of the layers with anything to write
    counts = {"built": 0, "skipped": 0}
    for layer in range(n_layers):
        name = f"blocks.{layer}.attn"
        kinds = HEAD_KINDS + ((COMPOSITION,) if layer else ())
        stored = {(r["channel"], r["kind"]): r.get("settings") for r in
                  read_rows(store, "figures", model=model_name, layer=name)}
        todo = [h for h in range(n_heads) if not all(kind.up_to_date(stored.get((h, kind.name)), common)
                                                     for kind in kinds)]
        counts["built"] += len(todo)
        counts["skipped"] += n_heads - len(todo)
        old = read_rows(store, "layers", model=model_name, layer=name)
        view_ok = ATTENTION_VIEW.up_to_date(stored.get((-1, ATTENTION_VIEW.name)), common)
        if todo or not view_ok or not old or old[0]["settings"] != layer_settings:
            plan.append((layer, todo))
    if not plan:
        return counts
    device = model_device(model)
    patterns = attention_patterns(model, sample.to(device))[:, 0].float().cpu()            # [L, H, n, n]
    scores = {kind: v.float().cpu() for kind, v in head_scores(model, probe.to(device)).items()}  # {kind: [L, H]}
    classes: dict[str, list[str]] = {}
    for r in classify_heads(scores):
        classes.setdefault(r["head"], []).append(r["kind"])
    folded = with_layer_norm_folded(model)
    copying = copying_scores(folded).cpu()                                        # [L, H]
    comp: dict[str, Tensor] = {}
    if any(layer and todo for layer, todo in plan):
        comp = {kind: composition_scores(folded, kind) for kind in ("q", "k", "v")}  # [L, H, L, H] each
    bar = tqdm(plan, desc="heads", disable=not progress)
    for layer, todo in bar:
        name = f"blocks.{layer}.attn"
        bar.set_postfix_str(f"{name}: {len(todo)} heads")
        figs: list[tuple[dict[str, Any], bytes | None]] = [(
            {"model": model_name, "layer": name, "channel": -1, "kind": ATTENTION_VIEW.name,
             "settings": {**common, **attention_payload(patterns[layer], labels)}}, None)]
        for h in todo:
            head = f"{layer}.{h}"
            values = {kind: float(scores[kind][layer, h]) for kind in KINDS}
            best = max(values, key=lambda kind: values[kind])
            row = {"model": model_name, "layer": name, "channel": h}
            caption = {} if tokenizer is not None else {"caption": "Attention pattern on repeated random tokens"}
            figs.append(({**row, "kind": ATTENTION.name, "settings": {
                **common, **caption, "score": values[best], "score_name": best, "note": sample_note}},
                _attention_png(patterns[layer, h], labels, f"head {head}")))
            note = f"On {probe.shape[0]} rows of [BOS] r r (r: {(probe.shape[1] - 1) // 2} random tokens)."
            if head in classes:
                note += f" Classified as: {', '.join(classes[head])} (classify_heads, threshold 0.4)."
            figs.append(({**row, "kind": HEAD_SCORES.name, "settings": {
                **common, "note": note,
                "table": {"columns": ["detector", "score"], "rows": [[kd, v] for kd, v in values.items()]}}},
                _scores_png(values, f"head {head}")))
            figs.append(({**row, "kind": QK_PAIRS.name, "settings": {
                **common, "note": "Largest entries of W_E W_Q W_Kᵀ W_Eᵀ (LayerNorm folded; unscaled scores).",
                "table": _pairs_table(qk_circuit(folded, layer, h), k, tokenizer, ("query", "key"))}}, None))
            ov = {**common, "note": "Largest entries of W_E W_V W_O W_U (LayerNorm folded): attending to the "
                                    "source token raises the logit token.",
                  "table": _pairs_table(ov_circuit(folded, layer, h), k, tokenizer, ("source", "logit"))}
            if math.isfinite(float(copying[layer, h])):
                ov.update(score=float(copying[layer, h]), score_name="copying")
            figs.append(({**row, "kind": OV_PAIRS.name, "settings": ov}, None))
            if layer:
                figs.append(_composition_row(row, comp, layer, h, cfg, common))
        with transaction(store):
            rows = [{**r, "png": None if data is None else put_png(store, data)} for r, data in figs]
            put_rows(store, "layers", [{"model": model_name, "layer": name, "channels": n_heads,
                                        "settings": layer_settings}])
            put_rows(store, "figures", rows)
    return counts


@functools.lru_cache(maxsize=8)
def _baseline(d_model: int, d_head: int) -> float:
    return composition_baseline(d_model, d_head, samples=BASELINE_SAMPLES)


def _composition_row(row: dict[str, Any], comp: dict[str, Tensor], layer: int, h: int, cfg: Any,
                     common: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The ``composition`` figure of head ``layer.h``: links to every head of layers ``< layer``."""
    earlier = [(l0, h0) for l0 in range(layer) for h0 in range(int(cfg.n_heads))]
    baseline = _baseline(int(cfg.d_model), int(cfg.d_head))
    qkv = torch.stack([torch.stack([comp[kind][l0, h0, layer, h] for l0, h0 in earlier])
                       for kind in ("q", "k", "v")]).float().cpu()                 # [3, n_earlier]
    units = [f"blocks.{l0}.attn:{h0}" for l0, h0 in earlier]
    order = sorted(range(len(earlier)), key=lambda i: -float(qkv[:, i].max()))
    links = [{"unit": units[i], "weight": float(qkv[:, i].max())} for i in order]
    table = {"columns": ["head", "q", "k", "v"], "rows": [[units[i], *map(float, qkv[:, i])] for i in order]}
    note = (f"Random baseline {baseline:.3f} (composition_baseline, {BASELINE_SAMPLES} samples); weight = the "
            "largest of the Q/K/V scores.")
    settings = {**common, "units": links, "table": table, "note": note, "score": links[0]["weight"],
                "score_name": "max composition"}
    return ({**row, "kind": COMPOSITION.name, "settings": settings},
            _composition_png(qkv, [f"{l0}.{h0}" for l0, h0 in earlier], f"into head {layer}.{h}"))


__all__ = ["DEFAULT_TEXT", "MAX_TOKENS", "build_heads"]
