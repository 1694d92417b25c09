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
size or where a scan was resumed), and the state (:class:`FeatureContexts`) continues a scan when passed back as
``state=`` with the next rows, and saves / loads as ``.npz`` (atomically).  Alongside: per-unit firing counts
(``> 0``) and activation histograms with fixed bins — for neurons and directions ``bins`` equal bins per unit over
the first batch's range widened by a quarter each side (later values outside it land in the end bins); for latents
``bins`` log-spaced bins shared by all latents from ``1e-3`` to ten times the first batch's largest value.

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


def _windows(rows: Tensor, flat: Tensor, context: int) -> Tensor:
    """Token windows ``[U, k, 2 * context + 1]`` around the positions ``flat [U, k]`` of ``rows [B, P]``."""
    b, p = rows.shape
    padded = torch.full((b, p + 2 * context), -1, dtype=torch.int64)
    padded[:, context: context + p] = rows
    r, pos = flat // p, flat % p
    offsets = torch.arange(2 * context + 1)
    return padded[r[..., None], pos[..., None] + offsets]


def _first_bins(acts: Tensor, kind: str, bins: int) -> Tensor:
    """Histogram edges from the first batch ``acts [M, U]``: per unit linear, or shared log-spaced for latents."""
    if kind == "latent":
        top = float(acts.max()) if acts.numel() else 1.0
        return torch.logspace(-3, math.log10(max(top, 1e-3) * 10), bins + 1)
    lo, hi = acts.min(0).values, acts.max(0).values
    pad = (hi - lo).clamp(min=1e-6) * 0.25
    return torch.stack([torch.linspace(float(a), float(b), bins + 1) for a, b in zip(lo - pad, hi + pad)])


def _add_counts(counts: Tensor, edges: Tensor, acts: Tensor) -> None:
    """Add ``acts [M, U]`` to ``counts [U, bins]`` in place (latents: only values ``> 0``, log bins)."""
    u, bins = counts.shape
    if edges.dim() == 1:
        on = acts > 0
        b = (torch.bucketize(acts[on].log10(), edges.log10()) - 1).clamp(0, bins - 1)
        unit = on.nonzero()[:, 1]
    else:
        lo, hi = edges[:, 0], edges[:, -1]
        b = ((acts - lo) / (hi - lo) * bins).floor().long().clamp(0, bins - 1).flatten()
        unit = torch.arange(u).repeat(acts.shape[0])
    counts.view(-1).index_add_(0, unit * bins + b, torch.ones_like(b))


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
        return lambda x: sae.encode(x)
    if kind == "direction":
        if units.dim() != 2 or units.shape[1] != d:
            raise MechscopeError(f"directions must be [units, {d}] for {hook}; got {tuple(units.shape)}")
        return lambda x: x @ units.T.float()
    return lambda x: x


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
    elif units == "neurons":
        kind = "neuron"
    else:
        raise MechscopeError(f"units must be 'neurons' or a tensor of directions [U, d]; got {units!r}")
    if state is not None:
        if state.kind != kind or state.hook != hook or state.n_ctx != tokens.shape[1]:
            raise MechscopeError(f"the state scanned {state.kind}s of {state.hook} on rows of {state.n_ctx} tokens; "
                                 f"these are {kind}s of {hook} on rows of {tokens.shape[1]}")
        k, context = state.k, state.context
    if k < 1 or context < 0:
        raise MechscopeError(f"k must be >= 1 and context >= 0; got k={k}, context={context}")
    tokens = tokens.long().cpu()
    n_ctx = tokens.shape[1]
    encode = None
    for start in range(0, len(tokens), batch_size):
        rows = tokens[start: start + batch_size]
        x = _hook_acts(model, hook, rows)
        x = x.reshape(-1, x.shape[-1]).float().cpu()
        if encode is None:
            encode = _encoder(kind, sae, units, x.shape[-1], hook)
        acts = encode(x)
        if state is None:
            u = acts.shape[1]
            edges = _first_bins(acts, kind, bins)
            state = FeatureContexts(kind, hook, k, context, n_ctx, torch.full((u, k), -math.inf),
                                    torch.full((u, k), -1, dtype=torch.int64),
                                    torch.full((u, k, 2 * context + 1), -1, dtype=torch.int64),
                                    torch.zeros(u, dtype=torch.int64), edges,
                                    torch.zeros(u, bins, dtype=torch.int64), tokenizer=tokenizer)
        if acts.shape[1] != state.units:
            raise MechscopeError(f"the state has {state.units} units; {hook} gives {acts.shape[1]}")
        _merge(state, acts, rows, start_flat=state.rows * n_ctx)
        state.fired += (acts > 0).sum(0)
        _add_counts(state.counts, state.edges, acts)
        state.rows += len(rows)
        state.tokens += acts.shape[0]
    if state is None:
        raise MechscopeError("feature_contexts needs at least one row of tokens")
    if tokenizer is not None:
        state.tokenizer = tokenizer
    return state


def _merge(state: FeatureContexts, acts: Tensor, rows: Tensor, start_flat: int) -> None:
    """Merge one batch's activations ``acts [B * n_ctx, U]`` of ``rows [B, n_ctx]`` into ``state``'s top-k."""
    vals = acts.T.contiguous()
    if state.kind == "latent":
        vals = vals.masked_fill(vals <= 0, -math.inf)   # a latent's contexts are where it fires
    v, cols = _block_top(vals, state.k)
    all_v = torch.cat([state.values, v], 1)
    all_i = torch.cat([state.index, cols + start_flat], 1)
    all_w = torch.cat([state.windows, _windows(rows, cols, state.context)], 1)
    order = torch.sort(all_v, dim=1, descending=True, stable=True).indices[:, : state.k]
    state.values = all_v.gather(1, order)
    state.index = all_i.gather(1, order).masked_fill(state.values == -math.inf, -1)
    state.windows = all_w.gather(1, order[..., None].expand(-1, -1, all_w.shape[2]))
    state.windows[state.index < 0] = -1
