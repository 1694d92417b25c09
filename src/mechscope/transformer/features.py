"""Top-activating token contexts of every MLP neuron or dictionary latent: one streaming pass over token rows.

``feature_contexts(model, tokens, hook)`` runs ``model`` over ``tokens [N, n_ctx]`` in batches, reads the hook
point's activations ``[B, n_ctx, d]`` and keeps, for every *unit*, the ``k`` (row, position) where it is largest:

* ``units="neurons"`` (default): every coordinate of the hook (``blocks.0.mlp.hook_post``: the 512 neurons);
* ``sae=`` a :class:`~mechscope.dictionary.sae.SparseAutoencoder` reading that hook: every latent of ``sae.encode``
  (a latent's contexts are only those where it fires, ``> 0``: a TopK latent is 0 almost everywhere, and its zeros
  are no context);
* ``units=`` a tensor ``[U, d]`` of directions: the projections ``x @ units.T`` (the random-direction control).

The design is the vision scan's (``vision/evidence/examples.py``): memory is constant in ``N`` (per unit ``k``
values, flat indices ``row * n_ctx + pos`` and the token window around each), the running top-k is merged with each
batch's by a stable sort, ties are broken by the smaller flat index (so the result is the same whatever the batch
size or where a scan was resumed; once a unit's k slots are full, only the batch's values above its k-th value are
looked at, and windows are cut only for those that enter), and the state (:class:`FeatureContexts`) continues a
scan when passed back as ``state=`` with the next rows, and saves / loads as ``.npz`` (atomically).  Alongside:
per-unit firing counts (``> 0``) and activation histograms with fixed bins — for neurons and directions ``bins``
equal bins per unit over the first batch's range widened by a quarter each side (later values outside it land in the
end bins); for latents ``bins`` log-spaced bins shared by all latents from ``1e-3`` to ten times the first batch's
largest value.

Example (a random model; the top context of neuron 3 is where its activation is largest)::

    >>> import torch
    >>> from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
    >>> model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=8,
    ...                                            d_vocab=20, d_mlp=32), seed=0)
    >>> tokens = torch.randint(0, 20, (6, 8), generator=torch.Generator().manual_seed(0))
    >>> fc = feature_contexts(model, tokens, "blocks.0.mlp.hook_post", k=3, batch_size=4)
    >>> fc.values.shape, fc.rows, fc.tokens
    (torch.Size([32, 3]), 6, 48)
    >>> acts = model.run_with_cache(tokens)[1]["blocks.0.mlp.hook_post"][..., 3].flatten()
    >>> int(fc.index[3, 0]) == int(acts.argmax()), bool(torch.isclose(fc.values[3, 0], acts.max()))
    (True, True)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mechscope.artefacts import load_npz, save_npz
from mechscope.dictionary.scores import hook_points
from mechscope.errors import MechscopeError, unknown_name

__all__ = ["FeatureContexts", "Context", "feature_contexts", "load_contexts"]

_FORMAT = 1
_ARRAYS = ("values", "index", "windows", "fired", "edges", "counts")
KINDS = ("neuron", "latent", "direction")


@dataclass(frozen=True)
class Context:
    """One top context of a unit: its ``value``, ``row`` and ``position`` in the scanned rows, the window's
    token ids (``-1`` beyond the row's ends) and ``text``: the window decoded, the max token in ``[[ ]]``."""

    value: float
    row: int
    position: int
    token_ids: list[int]
    max_token: str
    text: str


@dataclass(eq=False)
class FeatureContexts:
    """The running result of :func:`feature_contexts` (``U`` units, ``k`` slots, window ``W = 2 * context + 1``).

    ``values [U, k]`` (float32, best first; ``-inf`` in an empty slot), ``index [U, k]`` (int64 flat
    ``row * n_ctx + pos``; ``-1`` empty), ``windows [U, k, W]`` (token ids, the max token at ``context``),
    ``fired [U]`` (tokens where the unit is ``> 0``), ``edges`` (``[U, bins + 1]`` per unit, or ``[bins + 1]``
    log-spaced shared), ``counts [U, bins]``; ``rows`` / ``tokens`` scanned so far; ``n_ctx`` the row length.
    """

    kind: str
    hook: str
    k: int
    context: int
    n_ctx: int
    values: Tensor
    index: Tensor
    windows: Tensor
    fired: Tensor
    edges: Tensor
    counts: Tensor
    rows: int = 0
    tokens: int = 0
    tokenizer: Any = None

    @property
    def units(self) -> int:
        return int(self.values.shape[0])

    @property
    def frequency(self) -> Tensor:
        """Fraction of scanned tokens where each unit is ``> 0``: ``[U]`` float64."""
        return self.fired.double() / max(self.tokens, 1)

    def check_unit(self, unit: int) -> int:
        """``unit`` as an int, or ``MechscopeError`` naming the valid range."""
        if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)) or not 0 <= int(unit) < self.units:
            raise MechscopeError(f"no {self.kind} {unit!r} at {self.hook}: valid {self.kind}s are 0..{self.units - 1}")
        return int(unit)

    def histogram(self, unit: int) -> tuple[list[float], list[int]]:
        """``(edges, counts)`` of ``unit``'s activation histogram (``bins + 1`` edges, ``bins`` counts)."""
        u = self.check_unit(unit)
        edges = self.edges if self.edges.dim() == 1 else self.edges[u]
        return edges.tolist(), self.counts[u].tolist()

    def contexts(self, unit: int, tokenizer: Any = None) -> list[Context]:
        """The filled top contexts of ``unit``, best first, decoded with ``tokenizer`` (default: the scan's)."""
        u = self.check_unit(unit)
        tok = tokenizer if tokenizer is not None else self.tokenizer
        if tok is None:
            raise MechscopeError("contexts() needs a tokenizer: pass one here or to feature_contexts")
        out = []
        for slot in range(self.k):
            flat = int(self.index[u, slot])
            if flat < 0:
                break
            ids = self.windows[u, slot].tolist()
            before = [t for t in ids[: self.context] if t >= 0]
            after = [t for t in ids[self.context + 1:] if t >= 0]
            peak = tok.decode([ids[self.context]])
            out.append(Context(float(self.values[u, slot]), flat // self.n_ctx, flat % self.n_ctx, ids, peak,
                               f"{tok.decode(before)}[[{peak}]]{tok.decode(after)}"))
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the state as ``.npz`` (atomically); :func:`load_contexts` reads it back."""
        arrays = {name: getattr(self, name).numpy() for name in _ARRAYS}
        meta = np.array([self.k, self.context, self.n_ctx, self.rows, self.tokens], dtype=np.int64)
        save_npz(path, {**arrays, "meta": meta, "kind": np.array(self.kind), "hook": np.array(self.hook)},
                 format=_FORMAT)


def load_contexts(path: str | os.PathLike, tokenizer: Any = None) -> FeatureContexts:
    """A :class:`FeatureContexts` saved by ``FeatureContexts.save`` (``MechscopeError`` for a damaged file)."""
    def build(data: Any) -> FeatureContexts:
        k, context, n_ctx, rows, tokens = (int(v) for v in data["meta"])
        arrays = {name: torch.from_numpy(np.array(data[name])) for name in _ARRAYS}
        return FeatureContexts(str(data["kind"]), str(data["hook"]), k, context, n_ctx, rows=rows, tokens=tokens,
                               tokenizer=tokenizer, **arrays)

    return load_npz(path, kind="feature contexts", writer="FeatureContexts.save", format=_FORMAT, build=build)


# ---- the streaming top-k ------------------------------------------------------------------------------------


def _block_top(vals: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per row of ``vals [U, M]`` the ``k`` largest, ordered by value (desc) then column (asc); ties at the k-th
    value resolved to the smaller columns.  Returns ``(values [U, k], columns [U, k])``."""
    kk = min(k, vals.shape[1])
    v, i = vals.topk(kk, dim=1)
    kth = v[:, -1:]
    crowded = torch.nonzero(((vals >= kth).sum(1) > kk) & kth.isfinite().flatten()).flatten()
    if len(crowded):   # rare: equal values straddle the k-th slot; a stable sort keeps the smaller columns
        order = torch.sort(vals[crowded], dim=1, descending=True, stable=True).indices[:, :kk]
        i[crowded], v[crowded] = order, vals[crowded].gather(1, order)
    by_col = torch.sort(i, dim=1).indices
    v, i = v.gather(1, by_col), i.gather(1, by_col)
    by_val = torch.sort(v, dim=1, descending=True, stable=True).indices
    return v.gather(1, by_val), i.gather(1, by_val)


def _dense_top(acts: Tensor, k: int, floor: Tensor | None) -> tuple[Tensor, Tensor]:
    """``_block_top`` of ``acts [M, U]`` per unit (column), keeping only values above ``floor [U]`` when given:
    the few ``(token, unit)`` that beat it go through ``_sparse_top`` (``-inf`` / ``-1`` in unfilled slots).
    Falls back to the dense top-k when more than an eighth of the batch beats the floor (early batches)."""
    if floor is not None:
        flat = torch.from_numpy(np.flatnonzero(acts.numpy() > floor.numpy()))   # numpy's is several times faster
        if len(flat) * 8 <= acts.numel():
            token, unit = flat // acts.shape[1], flat % acts.shape[1]          # in token order, as _sparse_top needs
            return _sparse_top(token, unit, acts[token, unit], acts.shape[1], k)
    return _block_top(acts.T.contiguous(), k)


def _windows(rows: Tensor, flat: Tensor, context: int) -> Tensor:
    """Token windows ``[..., 2 * context + 1]`` around the positions ``flat [...]`` of ``rows [B, P]``."""
    b, p = rows.shape
    padded = torch.full((b, p + 2 * context), -1, dtype=torch.int64)
    padded[:, context: context + p] = rows
    r, pos = flat // p, flat % p
    offsets = torch.arange(2 * context + 1)
    return padded[r[..., None], pos[..., None] + offsets]


def _sparse_top(token: Tensor, unit: Tensor, value: Tensor, units: int, k: int) -> tuple[Tensor, Tensor]:
    """``_block_top`` of a sparse batch: non-zeros ``(token, unit, value)`` in token order -> per unit the ``k``
    largest ``(values [units, k], tokens [units, k])`` by value (desc) then token (asc); ``-inf`` / ``-1`` empty."""
    order = torch.sort(value, descending=True, stable=True).indices        # equal values stay in token order
    order = order[torch.sort(unit[order], stable=True).indices]            # grouped by unit, each group sorted
    unit, value, token = unit[order], value[order], token[order]
    count = torch.bincount(unit, minlength=units)
    rank = torch.arange(len(unit)) - (count.cumsum(0) - count)[unit]
    keep = rank < k
    values = torch.full((units, k), -math.inf)
    cols = torch.full((units, k), -1, dtype=torch.int64)
    values[unit[keep], rank[keep]] = value[keep]
    cols[unit[keep], rank[keep]] = token[keep]
    return values, cols


def _latent_code(sae: Any, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The firing latents of ``x [M, d_in]`` as ``(token, latent, value)`` in token order: ``sae.encode``'s
    non-zeros, without building the dense ``[M, n_latents]`` code for a TopK SAE."""
    if sae.config.kind == "topk":
        value, latent = sae.pre_activations(x).relu_().topk(sae.config.k, dim=-1)   # in place: a fresh tensor
        token = torch.arange(len(x)).repeat_interleave(value.shape[1])
        value, latent = value.flatten(), latent.flatten()
    else:
        dense = sae.encode(x)
        token, latent = dense.nonzero(as_tuple=True)
        value = dense[token, latent]
    on = value > 0
    return token[on], latent[on], value[on]


def _linear_edges(acts: Tensor, bins: int) -> Tensor:
    """Per-unit histogram edges ``[U, bins + 1]`` over the first batch ``acts [M, U]``, widened by a quarter."""
    lo, hi = acts.min(0).values, acts.max(0).values
    pad = (hi - lo).clamp(min=1e-6) * 0.25
    steps = torch.linspace(0, 1, bins + 1)
    return (lo - pad)[:, None] + (hi - lo + 2 * pad)[:, None] * steps


def _log_edges(value: Tensor, bins: int) -> Tensor:
    """Shared log-spaced edges ``[bins + 1]`` from ``1e-3`` to ten times the first batch's largest ``value``."""
    top = float(value.max()) if value.numel() else 1.0
    return torch.logspace(-3, math.log10(max(top, 1e-3) * 10), bins + 1)


def _bin_counts(units: int, bins: int, unit: Tensor, b: Tensor) -> Tensor:
    return torch.bincount(unit * bins + b.clamp(0, bins - 1), minlength=units * bins).view(units, bins)


def _dense_counts(acts: Tensor, edges: Tensor, bins: int) -> Tensor:
    """Per-unit histogram ``[U, bins]`` of ``acts [M, U]`` over linear ``edges [U, bins + 1]``: bin
    ``floor((a - lo) * bins / (hi - lo))`` clamped to the end bins.  The bin in float (contiguous ``lo`` and scale:
    a strided broadcast operand costs several times the arithmetic), clamped first so that the integer conversion's
    truncation is the floor, then one ``bincount`` of the integer keys ``unit * bins + bin`` (int16 while they fit:
    a narrower key, a faster bincount)."""
    units = acts.shape[1]
    lo, hi = edges[:, 0].contiguous(), edges[:, -1].contiguous()
    key = torch.int16 if units * bins <= 2 ** 15 else torch.int32 if units * bins < 2 ** 31 else torch.int64
    b = (acts - lo).mul_(bins / (hi - lo)).clamp_(0, bins - 1).to(key)
    b += torch.arange(units, dtype=key) * bins
    return torch.bincount(b.view(-1), minlength=units * bins).view(units, bins)


class _Stop(Exception):
    pass


def _hook_acts(model: nn.Module, hook: str, rows: Tensor) -> Tensor:
    """The output of module ``hook`` on ``rows`` (the forward pass stops there)."""
    modules = dict(model.named_modules())
    if not hook or hook not in modules:
        raise unknown_name("hook point", hook, hook_points(model), where=type(model).__name__)
    seen: dict[str, Tensor] = {}

    def grab(_m: nn.Module, _i: Any, out: Tensor) -> None:
        seen["x"] = out
        raise _Stop

    handle = modules[hook].register_forward_hook(grab)
    try:
        model(rows)
    except _Stop:
        pass
    finally:
        handle.remove()
    return seen["x"]


def _encoder(kind: str, sae: Any, units: Any, d: int, hook: str):
    if kind == "latent":
        if sae.config.d_in != d:
            raise MechscopeError(f"the SAE reads d_in={sae.config.d_in}, but {hook} has width {d}: it was trained on "
                                 "another hook or model")
        return lambda x: _latent_code(sae, x)
    if kind == "direction":
        if units.dim() != 2 or units.shape[1] != d:
            raise MechscopeError(f"directions must be [units, {d}] for {hook}; got {tuple(units.shape)}")
        return lambda x: x @ units.T.float()
    return lambda x: x


def _batch_stats(kind: str, code: Any, units: int, k: int, bins: int, edges: Tensor | None,
                 floor: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One batch's ``(top values [U, k], top tokens [U, k], fired [U], histogram counts [U, bins], edges)``.

    ``floor [U]``: the k-th value each unit has kept so far (``-inf`` while it has fewer): the batch's top lists
    then hold only values above it (the rest would lose the merge, a tie to the earlier token), found without a
    per-unit top-k over the whole batch."""
    if kind == "latent":
        token, unit, value = code
        edges = _log_edges(value, bins) if edges is None else edges
        b = torch.bucketize(value.log10(), edges.log10()) - 1
        fired, counts = torch.bincount(unit, minlength=units), _bin_counts(units, bins, unit, b)
        if floor is not None:   # only what beats the k-th value kept so far can enter the top k
            beat = value > floor[unit]
            token, unit, value = token[beat], unit[beat], value[beat]
        return (*_sparse_top(token, unit, value, units, k), fired, counts, edges)
    acts = code
    edges = _linear_edges(acts, bins) if edges is None else edges
    positive = (acts.numpy() > 0).view(np.uint8)   # counted in 16-bit lanes while a batch has < 65,536 tokens
    count = np.uint16 if len(acts) < 2 ** 16 else np.int64
    fired = torch.from_numpy(np.add.reduce(positive, axis=0, dtype=count).astype(np.int64))
    return (*_dense_top(acts, k, floor), fired, _dense_counts(acts, edges, bins), edges)


@torch.no_grad()
def feature_contexts(model: nn.Module, tokens: Tensor, hook: str, *, units: str | Tensor = "neurons",
                     sae: Any = None, k: int = 20, context: int = 8, bins: int = 40, batch_size: int = 32,
                     state: FeatureContexts | None = None, tokenizer: Any = None) -> FeatureContexts:
    """Scan ``tokens [N, n_ctx]`` (see the module docstring) and return the per-unit top-``k`` contexts.

    ``state``: a previous result to continue (``tokens`` are then the rows after the ones it has seen; ``k``,
    ``context`` and ``bins`` are the state's).  Errors: an unknown ``hook`` (names the valid ones), an SAE or
    directions whose width is not the hook's, ``units`` neither ``"neurons"`` nor a tensor.
    """
    if tokens.dim() != 2:
        raise MechscopeError(f"feature_contexts needs token rows [rows, n_ctx], got {tuple(tokens.shape)}")
    if sae is not None:
        kind = "latent"
    elif isinstance(units, Tensor):
        kind = "direction"
    elif isinstance(units, str) and units == "neurons":
        kind = "neuron"
    else:
        raise MechscopeError(f"units must be 'neurons' or a tensor of directions [U, d]; got {units!r}")
    if state is not None:
        if state.kind != kind or state.hook != hook or state.n_ctx != tokens.shape[1]:
            raise MechscopeError(f"the state scanned {state.kind}s of {state.hook} on rows of {state.n_ctx} tokens; "
                                 f"these are {kind}s of {hook} on rows of {tokens.shape[1]}")
        k, context, bins = state.k, state.context, state.counts.shape[1]
    if k < 1 or context < 0 or bins < 1:
        raise MechscopeError(f"k and bins must be >= 1 and context >= 0; got k={k}, bins={bins}, context={context}")
    limit = getattr(getattr(model, "cfg", None), "n_ctx", None)
    if isinstance(limit, int) and tokens.shape[1] > limit:
        raise MechscopeError(f"rows of {tokens.shape[1]} tokens are longer than the model's context ({limit}); cut "
                             f"them to at most {limit} tokens")
    tokens = tokens.long().cpu()
    n_ctx = tokens.shape[1]
    encode = None
    for start in range(0, len(tokens), batch_size):
        rows = tokens[start: start + batch_size]
        x = _hook_acts(model, hook, rows)
        x = x.reshape(-1, x.shape[-1]).float().cpu()
        if encode is None:
            encode = _encoder(kind, sae, units, x.shape[-1], hook)
        code = encode(x)
        width = sae.config.n_latents if kind == "latent" else code.shape[1]
        if state is not None and width != state.units:
            raise MechscopeError(f"the state has {state.units} units; {hook} gives {width}")
        v, cols, fired, counts, edges = _batch_stats(kind, code, width, k, bins, None if state is None else state.edges,
                                                     None if state is None else state.values[:, -1].contiguous())
        if state is None:
            state = FeatureContexts(kind, hook, k, context, n_ctx, torch.full((width, k), -math.inf),
                                    torch.full((width, k), -1, dtype=torch.int64),
                                    torch.full((width, k, 2 * context + 1), -1, dtype=torch.int64),
                                    torch.zeros(width, dtype=torch.int64), edges,
                                    torch.zeros(width, bins, dtype=torch.int64), tokenizer=tokenizer)
        _merge(state, v, cols, rows, start_flat=state.rows * n_ctx)
        state.fired += fired
        state.counts += counts
        state.rows += len(rows)
        state.tokens += x.shape[0]
    if state is None:
        raise MechscopeError("feature_contexts needs at least one row of tokens")
    if tokenizer is not None:
        state.tokenizer = tokenizer
    return state


def _merge(state: FeatureContexts, v: Tensor, cols: Tensor, rows: Tensor, start_flat: int) -> None:
    """Merge one batch's top ``v [U, k']`` at token ``cols [U, k']`` of ``rows [B, n_ctx]`` into ``state``.  Only
    the units with an entry in the batch are touched (once the k-th values have risen, a batch beats few units),
    and token windows are cut only for the batch's entries that make it into the top ``k``."""
    live = torch.nonzero(v[:, 0] > -math.inf).flatten()   # v is sorted: its first slot says whether a unit has any
    if len(live) == len(v):
        state.values, state.index, state.windows = _merged(state, state.values, state.index, state.windows, v, cols,
                                                           rows, start_flat)
    elif len(live):
        state.values[live], state.index[live], state.windows[live] = _merged(
            state, state.values[live], state.index[live], state.windows[live], v[live], cols[live], rows, start_flat)


def _merged(state: FeatureContexts, values: Tensor, index: Tensor, windows: Tensor, v: Tensor, cols: Tensor,
            rows: Tensor, start_flat: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(values, index, windows)`` of some units (their rows of the state) merged with the batch's ``v, cols``."""
    k = state.k
    all_v = torch.cat([values, v], 1)
    all_i = torch.cat([index, cols + start_flat], 1)
    order = torch.sort(all_v, dim=1, descending=True, stable=True).indices[:, :k]
    values = all_v.gather(1, order)
    index = all_i.gather(1, order).masked_fill(values == -math.inf, -1)
    windows = windows.gather(1, order.clamp(max=k - 1)[..., None].expand(-1, -1, windows.shape[2]))
    new = (order >= k) & (index >= 0)
    if bool(new.any()):
        windows[new] = _windows(rows, index[new] - start_flat, state.context)
    windows[index < 0] = -1
    return values, index, windows
