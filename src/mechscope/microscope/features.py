"""Fill a results store with the Microscope's pages of an MLP's neurons and of a sparse dictionary's latents on it.
(Over 400 lines because the two layers it writes — neurons and latents — share one scan, one digest and one
transaction, and their links point at each other; the page figures themselves are in ``microscope.feature_view``.)

``build_features(store, model, sae, tokens, ...)`` writes, for the hook point ``hook`` (``blocks.L.mlp.hook_post``:
the MLP's neurons) of a language model, two layers that ``mechscope.microscope.site`` reads (see its store contract):

* layer ``hook`` (kind ``kinds.NEURONS``): one page per neuron;
* layer ``sae_name`` (kind ``kinds.LATENTS``, e.g. ``"mlp-1l-sae"``): one page per latent of ``sae``.

Each layer comes from ONE streaming ``transformer.features.feature_contexts`` pass over ``tokens [N, n_ctx]``
(top-``k`` contexts, firing counts, histograms), plus one forward over only the rows that hold the built units'
top contexts, which reads the unit's activation on every token of each context window.  Per unit (``channel``),
``figures`` rows without PNGs (text and CSS: light, searchable):

* ``top_contexts``: the ``k`` top contexts (``2 * context + 1`` tokens), each token with the unit's activation
  (``feature_view.window_payload``; ``score``: the largest activation);
* ``logit_effects``: the tokens the unit's output direction promotes and suppresses
  (``transformer.monosemanticity.unit_direction`` / ``logit_effects``) as a table;
* ``firing_density``: firing frequency (``> 0``) over the scanned tokens, and the layer's histogram of log10 frequency
  with the unit's bin marked (``score``: the frequency);
* ``activation_histogram``: the scan's histogram of the unit's activations (latents: log-spaced bins over the
  tokens where it fires; neurons: linear bins over every token);
* a latent's ``decoder_neurons``: links to the ``links`` neurons of largest ``|W_dec[latent, n]|`` (the neurons
  its decoder row writes); a neuron's ``latents_writing`` / ``latents_reading``: links to the latents of largest
  ``|W_dec[:, n]|`` / ``|W_enc[n, :]|``.

and one layer-wide (``channel = -1``) ``feature_list`` row per layer: every built unit in one line (frequency, the
tokens its top contexts peak on, the tokens it promotes), which the layer page lists with a search box.

Incremental, as ``microscope.heads``: ``settings["build"]`` is a digest of the weights of the model and the SAE,
the tokens, ``k`` / ``context`` / ``links`` / ``bins`` and ``FORMAT``; a layer whose requested units and list are
up to date is skipped without a pass; each layer is written in one ``transaction`` (nothing half-written).

Example (a random model and dictionary)::

    >>> import tempfile, torch
    >>> from mechscope.dictionary.sae import SAEConfig, SparseAutoencoder
    >>> from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
    >>> model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=8,
    ...                                            d_vocab=20, d_mlp=32), seed=0)
    >>> sae = SparseAutoencoder(SAEConfig(d_in=32, n_latents=64, kind="topk", k=4))
    >>> tokens = torch.randint(0, 20, (6, 8), generator=torch.Generator().manual_seed(0))
    >>> out = tempfile.mkdtemp()
    >>> build_features(out, model, sae, tokens, model_name="tiny", sae_name="tiny-sae", latents=[0, 5], k=3,
    ...                progress=False)
    {'latents': {'built': 2, 'skipped': 0}, 'neurons': {'built': 32, 'skipped': 0}}
    >>> build_features(out, model, sae, tokens, model_name="tiny", sae_name="tiny-sae", latents=[0, 5], k=3,
    ...                progress=False)
    {'latents': {'built': 0, 'skipped': 2}, 'neurons': {'built': 0, 'skipped': 32}}
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mechscope.errors import MechscopeError
from mechscope.microscope.feature_view import bars_payload, token_label, window_payload
from mechscope.microscope.kinds import (ACTIVATION_HISTOGRAM, DECODER_NEURONS, DENSITY, FEATURE_KINDS, FEATURE_LIST,
                                        LATENTS, LATENTS_READING, LATENTS_WRITING, LOGIT_EFFECTS, NEURONS,
                                        TOP_CONTEXTS, FigureKind, LayerKind)
from mechscope.store import Store, open_store, put_rows, read_rows, transaction
from mechscope.transformer.features import FeatureContexts, feature_contexts
from mechscope.transformer.models import run_with_cache
from mechscope.transformer.monosemanticity import LogitEffects, logit_effects, unit_direction

FORMAT = 1             # bump when the rows written change, so that stores are rebuilt
DENSITY_BINS_PER_DECADE = 4
_MLP_HOOK = re.compile(r"blocks\.(\d+)\.mlp\.hook_post")


@dataclass(frozen=True)
class _Settings:
    """The arguments of one ``build_features`` call, checked."""

    model_name: str
    sae_name: str
    hook: str
    layer: int                    # L of blocks.L.mlp.hook_post
    width: int                    # the hook's width: the number of neurons
    tokenizer: Any
    latents: list[int] | None
    select: int | None
    neurons: list[int] | None
    k: int
    context: int
    links: int
    bins: int
    batch_size: int
    progress: bool


@dataclass
class _Part:
    """One layer to build: its unit kind, store layer name, units asked for, what is stored, what to write."""

    what: str                     # "neuron" | "latent"
    layer: str
    kind: LayerKind
    count: int
    asked: list[int]
    fresh: set[int]
    todo: list[int]
    current: bool                 # the layer row and list are up to date
    listing: dict[str, Any]       # the stored feature_list row's settings ({} when none)
    fc: FeatureContexts | None = None


def _digest(modules: Sequence[Any], **fields: Any) -> str:
    h = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    for module in modules:
        for name, t in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _units(asked: Sequence[int] | None, count: int, what: str, where: str) -> list[int]:
    if asked is None:
        return list(range(count))
    out = []
    for u in asked:
        if isinstance(u, bool) or not isinstance(u, int) or not 0 <= u < count:
            raise MechscopeError(f"no {what} {u!r} in {where}: valid {what}s are 0..{count - 1}")
        out.append(int(u))
    return sorted(set(out))


def spread_by_density(frequency: Tensor, n: int) -> list[int]:
    """``n`` live units (``frequency > 0``) evenly spread over their ranking from most to least frequent (ties by
    index): a deterministic selection that covers the whole density range.

    >>> spread_by_density(torch.tensor([0.5, 0.0, 0.1, 0.3, 0.01]), 2)
    [0, 4]
    """
    live = [u for u in sorted(range(len(frequency)), key=lambda u: (-float(frequency[u]), u)) if frequency[u] > 0]
    if n >= len(live):
        return sorted(live)
    if n <= 1:
        return live[:max(n, 0)]
    return sorted({live[round(i * (len(live) - 1) / (n - 1))] for i in range(n)})


def build_features(out_dir: str | os.PathLike | Store, model: Any, sae: Any, tokens: Tensor, *, model_name: str,
                   sae_name: str = "sae", hook: str = "blocks.0.mlp.hook_post", tokenizer: Any = None,
                   latents: Sequence[int] | None = None, select: int | None = None,
                   neurons: Sequence[int] | None = None, k: int = 10, context: int = 8, links: int = 8,
                   bins: int = 24, batch_size: int = 32, progress: bool = True) -> dict[str, dict[str, int]]:
    """Write the pages of ``hook``'s neurons and ``sae``'s latents into the store ``out_dir`` (module docstring).

    Args:
        out_dir: the store folder (created if need be), or an open ``Store``.
        model: a language model with ``run_with_cache`` and ``blocks[L].mlp.W_out``, ``unembed.W_U`` (e.g.
            ``zoo.registry.load_language_model("mlp-1l")``); not modified.
        sae: a ``dictionary.sae.SparseAutoencoder`` reading ``hook`` (``d_in`` = the hook's width), or ``None``
            for the neuron pages only.
        tokens: held-out token rows ``[N, n_ctx]`` (``n_ctx`` at most the model's context).
        model_name, sae_name: the store's ``model`` key and the latents' layer name.
        tokenizer: decodes the tokens (``decode(ids) -> str``); ``None``: token ids as text.
        latents, neurons: the units to build (default: all); an index out of range names the valid range.
        select: build only ``select`` live latents spread over the density ranking (``spread_by_density``;
            instead of ``latents``).
        k, context, links, bins: top contexts per unit, tokens each side of the peak, links per unit, histogram
            bins.
        progress: show the scans' progress.

    Returns:
        ``{"latents": {"built", "skipped"}, "neurons": {"built", "skipped"}}`` (no ``"latents"`` without ``sae``).
    """
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.numel() == 0:
        raise MechscopeError(f"tokens must be a non-empty tensor of rows [N, n_ctx]; got "
                             f"{tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__}")
    for name, value, low in (("k", k, 1), ("context", context, 0), ("links", links, 1), ("bins", bins, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise MechscopeError(f"{name} must be an integer >= {low}, got {value!r}")
    match = _MLP_HOOK.fullmatch(hook)
    if match is None:
        raise MechscopeError(f"build_features reads MLP neurons: hook must be blocks.L.mlp.hook_post, got {hook!r}")
    if latents is not None and select is not None:
        raise MechscopeError("give latents (indices) or select (how many, spread by density), not both")
    tokens = tokens.long().cpu()
    limit = getattr(getattr(model, "cfg", None), "n_ctx", None)
    if isinstance(limit, int) and tokens.shape[1] > limit:
        raise MechscopeError(f"rows of {tokens.shape[1]} tokens are longer than the model's context ({limit})")
    with torch.no_grad():
        width = int(run_with_cache(model, tokens[:1], [hook])[1][hook].shape[-1])   # unknown hooks named here
    if sae is not None and int(sae.config.d_in) != width:
        raise MechscopeError(f"the dictionary {sae_name!r} reads d_in={sae.config.d_in}, but {hook} of {model_name} "
                             f"has width {width}: it was trained on another hook or model")
    a = _Settings(model_name, sae_name, hook, int(match.group(1)), width, tokenizer,
                  None if latents is None else list(latents), select, None if neurons is None else list(neurons),
                  k, context, links, bins, batch_size, progress)
    if isinstance(out_dir, Store):
        return _build(out_dir, model, sae, tokens, a)
    with open_store(out_dir) as store:
        return _build(store, model, sae, tokens, a)


def _build(store: Store, model: Any, sae: Any, tokens: Tensor, a: _Settings) -> dict[str, dict[str, int]]:
    model_name, hook, width, layer_index = a.model_name, a.hook, a.width, a.layer
    build = _digest([model] + ([sae] if sae is not None else []), format=FORMAT, tokens=hashlib.sha256(
        tokens.numpy().tobytes()).hexdigest(), shape=list(tokens.shape), k=a.k, context=a.context,
        links=a.links, bins=a.bins)
    common = {"build": build}
    parts = [_part(store, model_name, "neuron", hook, NEURONS, width, a.neurons, common)]
    if sae is not None:
        parts.insert(0, _part(store, model_name, "latent", a.sae_name, LATENTS, int(sae.config.n_latents),
                              a.latents, common))
    counts: dict[str, dict[str, int]] = {}
    for part in parts:
        selecting = part.what == "latent" and a.select is not None
        if selecting and part.current and part.listing.get("request") == {"select": a.select}:
            part.asked, part.todo = [u for u in part.listing.get("asked", []) if u in part.fresh], []
        elif selecting or part.todo or not part.current:
            part.fc = feature_contexts(model, tokens, hook, sae=sae if part.what == "latent" else None,
                                       k=a.k, context=a.context, bins=a.bins, batch_size=a.batch_size,
                                       tokenizer=a.tokenizer)
            if selecting:
                part.asked = spread_by_density(part.fc.frequency, a.select)
                part.todo = [u for u in part.asked if u not in part.fresh]
        counts[f"{part.what}s"] = {"built": len(part.todo), "skipped": len(part.asked) - len(part.todo)}
    todo = [p for p in parts if p.fc is not None]
    if not todo:
        return counts
    acts = _window_acts(model, sae, tokens, hook, todo, a.batch_size)
    label = _labeller(a.tokenizer)
    for part in tqdm(todo, desc="feature pages", disable=not a.progress):
        rows = []
        for u in part.todo:
            rows += _unit_rows(part, u, acts, model, sae, layer_index, label, a, common)
        listed = sorted(part.fresh | set(part.todo))
        entries = [_entry(part, u, model, sae, layer_index, label) for u in listed]
        rows.append({"model": model_name, "layer": part.layer, "channel": -1, "kind": FEATURE_LIST.name,
                     "settings": {**common, "request": _request(part, a), "asked": part.asked, "entries": entries,
                                  "note": f"{len(listed)} of {part.count} {part.kind.noun}s built."}})
        with transaction(store):
            put_rows(store, "layers", [{"model": model_name, "layer": part.layer, "channels": None,
                                        "settings": _layer_settings(part, a, int(tokens.numel()))}])
            put_rows(store, "figures", [{**r, "png": None} for r in rows])
    return counts


def _request(part: _Part, a: _Settings) -> dict[str, Any]:
    """What was asked for (a ``select`` is recalled so that an up-to-date selection needs no pass)."""
    if part.what == "latent" and a.select is not None:
        return {"select": a.select}
    return {f"{part.what}s": None if getattr(a, f"{part.what}s") is None else list(part.asked)}


def _layer_settings(part: _Part, a: _Settings, scanned: int) -> dict[str, Any]:
    return {"kind": part.kind.name, "thumbnail": TOP_CONTEXTS.name, "hook": a.hook, "units": part.count,
            "tokens": scanned, **({"dictionary": a.sae_name} if part.what == "latent" else {})}


def _part(store: Store, model_name: str, what: str, layer: str, kind: LayerKind, count: int,
          asked: Sequence[int] | None, common: dict[str, Any]) -> _Part:
    units = _units(asked, count, what, layer)
    kinds: tuple[FigureKind, ...] = FEATURE_KINDS + ((DECODER_NEURONS,) if what == "latent" else ())
    stored: dict[int, dict[str, Any]] = {}
    listing: Any = None
    for r in read_rows(store, "figures", model=model_name, layer=layer):
        if r["channel"] == -1 and r["kind"] == FEATURE_LIST.name:
            listing = r["settings"]
        stored.setdefault(r["channel"], {})[r["kind"]] = r.get("settings")
    fresh = {u for u, by in stored.items() if u >= 0 and all(kd.up_to_date(by.get(kd.name), common) for kd in kinds)}
    old = read_rows(store, "layers", model=model_name, layer=layer)
    listing = listing if isinstance(listing, dict) else {}
    current = (bool(old) and (old[0]["settings"] or {}).get("kind") == kind.name
               and FEATURE_LIST.up_to_date(listing, common)
               and {e[0] for e in listing.get("entries", []) if isinstance(e, list) and e} == fresh)
    return _Part(what, layer, kind, count, units, fresh, [u for u in units if u not in fresh], current, listing)


def _labeller(tokenizer: Any):
    cache: dict[int, str] = {}

    def label(t: int) -> str:
        if t not in cache:
            cache[t] = token_label(tokenizer.decode([t])) if tokenizer is not None else str(t)
        return cache[t]

    return label


@torch.no_grad()
def _window_acts(model: Any, sae: Any, tokens: Tensor, hook: str, parts: list[_Part], batch_size: int
                 ) -> dict[tuple[str, int, int], list[float]]:
    """``{(what, unit, slot): activations on the slot's window}``: one forward over the rows holding the built
    units' top contexts (the scan keeps the windows' tokens, not the activations on every one of them)."""
    wanted: dict[int, list[tuple[_Part, int, int, int, int]]] = {}
    for part in parts:
        fc = part.fc
        for u in part.todo:
            for slot in range(fc.k):
                flat = int(fc.index[u, slot])
                if flat < 0:
                    break
                row, pos = divmod(flat, fc.n_ctx)
                wanted.setdefault(row, []).append((part, u, slot, max(pos - fc.context, 0),
                                                   min(pos + fc.context + 1, fc.n_ctx)))
    out: dict[tuple[str, int, int], list[float]] = {}
    rows = sorted(wanted)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start: start + batch_size]
        x = run_with_cache(model, tokens[chunk], [hook])[1][hook].float().cpu()       # [B, n_ctx, d]
        code = sae.encode(x) if sae is not None and any(p.what == "latent" for p in parts) else None
        for b, row in enumerate(chunk):
            for part, u, slot, lo, hi in wanted[row]:
                source = code if part.what == "latent" else x
                out[(part.what, u, slot)] = source[b, lo:hi, u].tolist()
    return out


def _effects(part: _Part, u: int, model: Any, sae: Any, layer: int, k: int) -> LogitEffects:
    """The ``k`` tokens unit ``u``'s output direction promotes and suppresses most (ids; labelled by the caller)."""
    return logit_effects(model, unit_direction(model, u, sae if part.what == "latent" else None, layer), k=k)


def _unit_rows(part: _Part, u: int, acts: dict[tuple[str, int, int], list[float]], model: Any, sae: Any,
               layer: int, label: Any, a: _Settings, common: dict[str, Any]) -> list[dict[str, Any]]:
    fc = part.fc
    key = {"model": a.model_name, "layer": part.layer, "channel": u}
    windows = []
    for slot in range(fc.k):
        flat = int(fc.index[u, slot])
        if flat < 0:
            break
        ids = fc.windows[u, slot].tolist()
        kept = [i for i, t in enumerate(ids) if t >= 0]
        windows.append(window_payload([ids[i] for i in kept], acts[(part.what, u, slot)],
                                      peak=kept.index(fc.context), value=float(fc.values[u, slot]),
                                      row=flat // fc.n_ctx, position=flat % fc.n_ctx, label=label))
    top = float(fc.values[u, 0]) if windows else None
    contexts = {**common, "windows": windows, "scale": top if top and top > 0 else 1.0,
                "note": (f"The {len(windows)} tokens of {fc.tokens} scanned where the {part.kind.noun} is largest, "
                         f"{fc.context} tokens each side; background: its activation on each token (relative to "
                         "the largest); hover a token for the value." if windows else
                         f"Never fired on the {fc.tokens} tokens scanned.")}
    if top is not None:
        contexts.update(score=top, score_name="max activation")
    effects = _effects(part, u, model, sae, layer, a.links)
    table = {"columns": ["promoted", "logit", "suppressed", "logit"],
             "rows": [[repr(label(p[0])), p[2], repr(label(s[0])), s[2]]
                      for p, s in zip(effects.promoted, effects.suppressed)]}
    freq = float(fc.frequency[u])
    edges, counts = _density_histogram(fc.frequency, fc.tokens)
    mark = None
    if freq > 0:
        mark = min(max(int((math.log10(freq) - edges[0]) * DENSITY_BINS_PER_DECADE), 0), len(counts) - 1)
    where = (f"fires on {int(fc.fired[u])} of {fc.tokens} tokens (log10 frequency {math.log10(freq):.2f}); the "
             f"marked bar is its bin among the layer's {part.count} {part.kind.noun}s" if freq > 0 else
             f"never fired on the {fc.tokens} tokens scanned (dead here)")
    h_edges, h_counts = fc.histogram(u)
    h_label = ("activation (log-spaced bins; tokens where it fires)" if part.what == "latent"
               else "activation (every token)")
    rows = [{**key, "kind": TOP_CONTEXTS.name, "settings": contexts},
            {**key, "kind": LOGIT_EFFECTS.name, "settings": {**common, "table": table}},
            {**key, "kind": DENSITY.name, "settings": {
                **common, "score": freq, "score_name": "firing frequency", "note": where.capitalize() + ".",
                "bars": bars_payload(edges, counts, mark=mark, label="log10 firing frequency")}},
            {**key, "kind": ACTIVATION_HISTOGRAM.name, "settings": {
                **common, "bars": bars_payload(h_edges, h_counts, label=h_label),
                "note": "Bar heights: log(1 + count)."}}]
    if part.what == "latent":
        w = sae.W_dec.detach().float()[u]
        rows.append({**key, "kind": DECODER_NEURONS.name, "settings": {**common, "units": _top_links(
            w, a.hook, a.links), "note": "Weight: the decoder row's entry (unit norm row)."}})
    elif sae is not None:
        for kind, w in ((LATENTS_WRITING, sae.W_dec.detach().float()[:, u]),
                        (LATENTS_READING, sae.W_enc.detach().float()[u])):
            rows.append({**key, "kind": kind.name, "settings": {**common, "units": _top_links(
                w, a.sae_name, a.links)}})
    return rows


def _top_links(weights: Tensor, layer: str, n: int) -> list[dict[str, Any]]:
    order = weights.abs().topk(min(n, len(weights))).indices.tolist()
    return [{"unit": f"{layer}:{i}", "weight": float(weights[i])} for i in order]


def _density_histogram(frequency: Tensor, tokens: int) -> tuple[list[float], list[int]]:
    """The layer's histogram of log10 firing frequency (live units), ``DENSITY_BINS_PER_DECADE`` bins per decade
    from the rarest frequency the scan can see (``1 / tokens``) to 1."""
    low = math.floor(math.log10(1 / max(tokens, 1)))
    n = -low * DENSITY_BINS_PER_DECADE
    edges = [low + i / DENSITY_BINS_PER_DECADE for i in range(n + 1)]
    live = frequency[frequency > 0].log10()
    b = ((live - low) * DENSITY_BINS_PER_DECADE).floor().long().clamp(0, n - 1)
    return edges, torch.bincount(b, minlength=n).tolist()


def _entry(part: _Part, u: int, model: Any, sae: Any, layer: int, label: Any) -> list[Any]:
    fc = part.fc
    filled = int((fc.index[u] >= 0).sum())
    peaks = Counter(fc.windows[u, :filled, fc.context].tolist()).most_common(4)
    effects = _effects(part, u, model, sae, layer, 3)
    return [u, float(fc.frequency[u]), " ".join(repr(label(t)) for t, _ in peaks),
            " ".join(repr(label(p[0])) for p in effects.promoted)]


__all__ = ["build_features", "spread_by_density", "FORMAT"]
