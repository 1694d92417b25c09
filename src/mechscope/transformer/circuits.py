"""The weight-based analyses of "A Mathematical Framework for Transformer Circuits" (Elhage et al. 2021).

Pure functions over any model exposing TransformerLens's attribute paths — ``embed.W_E [d_vocab, d_model]``,
``pos_embed.W_pos [n_ctx, d_model]``, ``blocks[l].attn.W_Q / W_K / W_V [n_heads, d_model, d_head]``,
``blocks[l].attn.W_O [n_heads, d_head, d_model]``, ``unembed.W_U [d_model, d_vocab]`` — i.e. our
:class:`~mechscope.zoo.attn_only.AttnOnlyTransformer`, a TransformerLens ``HookedTransformer`` or a TransformerLens
4.x ``TransformerBridge``.

Conventions (TransformerLens's, row vectors: a residual vector ``x`` multiplies weights on the left, ``x @ W``):

* ``W_QK = W_Q W_Kᵀ [d_model, d_model]`` — the attention score of query ``x_q`` on key ``x_k`` is
  ``x_q W_QK x_kᵀ`` (before the ``1/sqrt(d_head)`` scale and biases).  Rows read the query, columns the key.
* ``W_OV = W_V W_O [d_model, d_model]`` — a head attending to ``x`` writes ``x W_OV``.  Rows read the
  attended-to (source) token, columns are the written direction.  This is TL's ``model.OV``; the paper writes
  the column-vector transpose ``W_O W_V``.

Only the weights are used: biases are ignored, and so is LayerNorm.  For a model with ``normalization="LN"``
fold it first (:func:`~mechscope.zoo.attn_only.fold_layer_norm`, or TL's ``fold_ln``) so that the products
include the LayerNorm weights; the per-token ``1/scale`` of LayerNorm is never included (as in the paper).

Every ``d_vocab x d_vocab`` circuit is returned as a :class:`FactoredMatrix` with inner dim ``d_head``; spectra,
norms and top entries are computed from the factors without materialising the dense matrix.

>>> import torch
>>> from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
>>> model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=16,
...                                            d_vocab=50), seed=0)
>>> qk_circuit(model).shape, ov_circuit(model, 1, 3).shape, qk_circuit(model, 0, positional=True).shape
(torch.Size([2, 4, 50, 50]), torch.Size([50, 50]), torch.Size([4, 16, 16]))
>>> scores = composition_scores(model, "k")
>>> scores.shape, bool((scores[1] == 0).all()), bool((scores[0, :, 1] > 0).all())
(torch.Size([2, 4, 2, 4]), True, True)
>>> copying_scores(model).shape, ov_eigenvalues(model).dtype
(torch.Size([2, 4]), torch.complex64)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from mechscope.errors import MechscopeError
from mechscope.transformer.factored import FactoredMatrix

KINDS = ("q", "k", "v")


# ---- weights ---------------------------------------------------------------------------------------------------


def weights(model: Any) -> dict[str, Tensor]:
    """The weights the analyses read, detached, with the heads of every layer stacked:
    ``W_Q, W_K, W_V [n_layers, n_heads, d_model, d_head]``, ``W_O [n_layers, n_heads, d_head, d_model]``,
    ``W_E [d_vocab, d_model]``, ``W_pos [n_ctx, d_model]`` and ``W_U [d_model, d_vocab]``.

    Reads ``model.blocks[l].attn.W_*``, ``model.embed.W_E``, ``model.pos_embed.W_pos`` and
    ``model.unembed.W_U``, so works on ours, a TransformerLens ``HookedTransformer`` and a TransformerLens 4.x
    ``TransformerBridge`` alike.  Grouped-query K/V weights (a bridge's ``[n_kv_heads, ...]``) are repeated to
    one per query head, as TL does (query head ``h`` reads K/V head ``h // (n_heads // n_kv_heads)``).  A model
    without learned positional embeddings (rotary) has no ``W_pos`` entry."""
    try:
        blocks = list(model.blocks)
        out = {name: torch.stack([getattr(b.attn, name).detach() for b in blocks])
               for name in ("W_Q", "W_K", "W_V", "W_O")}
        out["W_E"] = model.embed.W_E.detach()
        out["W_U"] = model.unembed.W_U.detach()
    except (AttributeError, TypeError, RuntimeError) as err:
        raise MechscopeError(f"{type(model).__name__} does not expose TransformerLens-style weights "
                             f"(blocks[l].attn.W_Q/W_K/W_V/W_O, embed.W_E, pos_embed.W_pos, unembed.W_U): "
                             f"{err}") from None
    try:
        out["W_pos"] = model.pos_embed.W_pos.detach()
    except AttributeError:      # rotary / ALiBi: positions never enter the residual stream
        pass
    n_heads = out["W_Q"].shape[1]
    for name in ("W_K", "W_V"):
        n_kv = out[name].shape[1]
        if n_kv != n_heads:
            if n_heads % n_kv:
                raise MechscopeError(f"{name} has {n_kv} heads per layer, which do not divide the {n_heads} "
                                     f"query heads.")
            out[name] = out[name].repeat_interleave(n_heads // n_kv, dim=1)
    return out


def _w_pos(w: dict[str, Tensor]) -> Tensor:
    if "W_pos" not in w:
        raise MechscopeError("this model has no learned positional embedding (pos_embed.W_pos; rotary or ALiBi "
                             "positions never enter the residual stream), so there is no positional circuit.")
    return w["W_pos"]


def _select(w: Tensor, layer: int | None, head: int | None) -> Tensor:
    """Index stacked per-head weights ``[L, H, ...]`` by ``layer`` / ``head`` (``None`` keeps the dim)."""
    n_layers, n_heads = w.shape[:2]
    if layer is not None and not -n_layers <= layer < n_layers:
        raise MechscopeError(f"layer {layer} is out of range: the model has {n_layers} layers (0..{n_layers - 1}).")
    if head is not None and not -n_heads <= head < n_heads:
        raise MechscopeError(f"head {head} is out of range: each layer has {n_heads} heads (0..{n_heads - 1}).")
    if layer is not None:
        w = w[layer]
        return w if head is None else w[head]
    return w if head is None else w[:, head]


def _kind(kind: str) -> str:
    k = str(kind).lower()
    if k not in KINDS:
        raise MechscopeError(f"kind must be one of 'q', 'k', 'v' (Q-, K- or V-composition), not {kind!r}.")
    return k


# ---- circuits --------------------------------------------------------------------------------------------------


def qk_circuit(model: Any, layer: int | None = None, head: int | None = None, *,
               positional: bool = False) -> FactoredMatrix:
    """The full QK circuit ``W_E W_Q W_Kᵀ W_Eᵀ``: ``[n_layers, n_heads, d_vocab, d_vocab]`` (``layer`` and/or
    ``head`` drop those dims).  Entry ``[q, k]`` is the attention score (unscaled, no biases) of a query on
    token ``q`` for a key on token ``k``: rows = query token, columns = key token.  ``W_E`` is used on both
    sides for standard and shortformer models alike.

    ``positional=True``: ``W_pos W_Q W_Kᵀ W_posᵀ [.., n_ctx, n_ctx]`` (rows = query position, columns = key
    position).  Inner dim ``d_head``."""
    w = weights(model)
    emb = _w_pos(w) if positional else w["W_E"]
    W_Q, W_K = _select(w["W_Q"], layer, head), _select(w["W_K"], layer, head)
    return FactoredMatrix(emb @ W_Q, W_K.mT @ emb.T)


def ov_circuit(model: Any, layer: int | None = None, head: int | None = None) -> FactoredMatrix:
    """The full OV circuit ``W_E W_V W_O W_U``: ``[n_layers, n_heads, d_vocab, d_vocab]`` (``layer`` and/or
    ``head`` drop those dims).  Entry ``[s, t]`` is how much attending to source token ``s`` raises the logit
    of token ``t``: rows = attended-to token, columns = output logit.  Equal to TransformerLens's
    ``W_E @ model.OV @ W_U`` (the paper's ``W_U W_O W_V W_E`` transposed).  Inner dim ``d_head``."""
    w = weights(model)
    W_V, W_O = _select(w["W_V"], layer, head), _select(w["W_O"], layer, head)
    return FactoredMatrix(w["W_E"] @ W_V, W_O @ w["W_U"])


def direct_path(model: Any, *, positional: bool = False) -> FactoredMatrix:
    """The direct path (zero-layer bigram term) ``W_E W_U [d_vocab, d_vocab]``: rows = current token, columns
    = logit.  ``positional=True``: ``W_pos W_U [n_ctx, d_vocab]`` (only meaningful for ``"standard"``
    positional embeddings, which enter the residual stream).  Inner dim ``d_model``."""
    w = weights(model)
    return FactoredMatrix(_w_pos(w) if positional else w["W_E"], w["W_U"])


def _right_factors(w: dict[str, Tensor], kind: str) -> tuple[Tensor, Tensor]:
    """``(A, B)`` of the later head's matrix ``W_B = A B [d_model, d_model]`` for ``kind``, each
    ``[L, H, d_model, d_head]`` / ``[L, H, d_head, d_model]``."""
    if kind == "q":
        return w["W_Q"], w["W_K"].mT        # W_QK
    if kind == "k":
        return w["W_K"], w["W_Q"].mT        # W_QKᵀ
    return w["W_V"], w["W_O"]               # W_OV


def virtual_weights(model: Any, source: tuple[int, int], target: tuple[int, int], kind: str = "v"
                    ) -> FactoredMatrix:
    """The composed ``[d_model, d_model]`` matrix of head ``source = (l1, h1)`` feeding head ``target =
    (l2, h2)`` (``l1 < l2``) through the residual stream, ``W_A W_B`` with ``W_A = W_V1 W_O1`` (the earlier
    head's OV) and

    * ``"q"``: ``W_B = W_Q2 W_K2ᵀ`` — ``x_s W_V1 W_O1 W_Q2 W_K2ᵀ x_kᵀ`` is the score contribution when the
      query of head 2 reads what head 1 moved from source ``x_s`` (rows = head 1's source, columns = key);
    * ``"k"``: ``W_B = W_K2 W_Q2ᵀ`` — head 1's output read as head 2's key (rows = head 1's source,
      columns = query);
    * ``"v"``: ``W_B = W_V2 W_O2`` — the virtual OV circuit of the two heads in series (rows = head 1's
      source, columns = written direction).

    Its Frobenius norm over ``‖W_A‖_F ‖W_B‖_F`` is the composition score.  Inner dim ``d_head``."""
    kind = _kind(kind)
    w = weights(model)
    (l1, h1), (l2, h2) = source, target
    W_V1, W_O1 = _select(w["W_V"], l1, h1), _select(w["W_O"], l1, h1)
    A, B = _right_factors(w, kind)
    n_layers = w["W_Q"].shape[0]
    if l1 % n_layers >= l2 % n_layers:
        raise MechscopeError(f"the source head's layer ({l1}) must come before the target's ({l2}): a head only "
                             f"reads what earlier layers wrote.")
    return FactoredMatrix(W_V1, (W_O1 @ _select(A, l2, h2)) @ _select(B, l2, h2))


def composition_scores(model: Any, kind: str = "v") -> Tensor:
    """Q-, K- or V-composition scores of every pair of heads, ``[L, H, L, H]``: entry ``[l1, h1, l2, h2]`` is
    ``‖W_A W_B‖_F / (‖W_A‖_F ‖W_B‖_F)`` with ``W_A = W_V1 W_O1`` and ``W_B`` as in :func:`virtual_weights`
    (``W_Q2 W_K2ᵀ``, ``W_K2 W_Q2ᵀ`` or ``W_V2 W_O2``), for ``l1 < l2``, and ``0`` for ``l1 >= l2`` — exactly
    TransformerLens's ``model.all_composition_scores(kind.upper())``.  In ``[0, 1]``; compare with
    :func:`composition_baseline`.

    With thin QRs ``W_V1 = Q1 R1`` and ``B2ᵀ = Q2 R2`` (``W_B = A2 B2``), ``‖W_V1 W_O1 A2 B2‖_F =
    ‖R1 (W_O1 A2) R2ᵀ‖_F``: all pairs cost ``d_head x d_head`` products, never ``d_model x d_model``."""
    kind = _kind(kind)
    w = weights(model)
    A2, B2 = _right_factors(w, kind)
    R1 = torch.linalg.qr(w["W_V"], mode="r").R                            # [L, H, dh, dh]
    R2 = torch.linalg.qr(B2.mT, mode="r").R                               # [L, H, dh, dh]
    left = FactoredMatrix(w["W_V"], w["W_O"]).norm()                      # [L, H]
    right = FactoredMatrix(A2, B2).norm()                                 # [L, H]
    n_layers, n_heads = left.shape
    scores = torch.zeros(n_layers, n_heads, n_layers, n_heads, dtype=left.dtype, device=left.device)
    for l1 in range(n_layers):                # only earlier -> later layers: l1 >= l2 stays 0 and is not computed
        if l1 + 1 == n_layers:
            break
        middle = torch.einsum("hem,lgmf->hlgef", w["W_O"][l1], A2[l1 + 1:])   # W_O1 A2 [H, L', H, dh, dh]
        pair = R1[l1][:, None, None] @ middle @ R2[l1 + 1:].mT[None]          # [H, L', H, dh, dh]
        comp = torch.linalg.matrix_norm(pair, ord="fro")
        scores[l1, :, l1 + 1:] = comp / left[l1][:, None, None] / right[l1 + 1:][None]
    return scores


def composition_baseline(d_model: int, d_head: int, samples: int = 1000, seed: int = 0) -> float:
    """The mean composition score of random heads: ``W_A = V O`` and ``W_B = Q Kᵀ`` with i.i.d. Gaussian
    ``V, Q, K [d_model, d_head]`` and ``O [d_head, d_model]`` (the same for Q-, K- and V-composition, since
    each ``W`` is a product of two Gaussian factors; the score is scale-free).  The paper subtracts this
    from the scores.  Deterministic for a given ``seed``; ``samples`` pairs, float64."""
    return float(composition_baseline_samples(d_model, d_head, samples, seed).mean())


def composition_baseline_samples(d_model: int, d_head: int, samples: int = 1000, seed: int = 0) -> Tensor:
    """The composition scores of ``samples`` pairs of random heads (as ``composition_baseline``), float64
    ``[samples]``: their spread says how far apart two heads' scores must be to differ beyond chance.

    >>> s = composition_baseline_samples(32, 8, samples=200)
    >>> tuple(s.shape), bool(0 < s.std() < s.mean() < 1)
    ((200,), True)
    """
    if samples < 1 or d_model < 1 or d_head < 1:
        raise MechscopeError(f"composition_baseline needs positive d_model, d_head and samples; got "
                             f"{d_model}, {d_head}, {samples}.")
    g = torch.Generator().manual_seed(seed)
    V, Q, K = (torch.randn(samples, d_model, d_head, generator=g, dtype=torch.float64) for _ in range(3))
    O = torch.randn(samples, d_head, d_model, generator=g, dtype=torch.float64)
    comp = FactoredMatrix(V, (O @ Q) @ K.mT).norm()
    return comp / FactoredMatrix(V, O).norm() / FactoredMatrix(Q, K.mT).norm()


# ---- eigenvalues -----------------------------------------------------------------------------------------------


def ov_eigenvalues(model: Any) -> Tensor:
    """Eigenvalues of each head's full OV circuit ``W_E W_V W_O W_U``, complex ``[L, H, d_head]``: the
    eigenvalues of the ``d_head x d_head`` matrix ``W_O W_U W_E W_V`` (the non-zero eigenvalues of the
    ``d_vocab x d_vocab`` circuit, plus zeros), unordered as ``torch.linalg.eigvals`` returns them.

    ``W_U W_E`` (``d_model x d_model``) is formed once and shared by every head, so the cost is one
    ``d_model x d_vocab x d_model`` product plus ``d_head``-sized work per head — not two ``d_vocab``-sized
    products per head, as multiplying each head's factored circuit out would be."""
    w = weights(model)
    shared = w["W_U"] @ w["W_E"]                                          # [d_model, d_model]
    return torch.linalg.eigvals(w["W_O"] @ shared @ w["W_V"])             # [L, H, dh, dh] -> [L, H, dh]


def copying_scores(model: Any) -> Tensor:
    """The eigenvalue copying score ``Re Σλ / Σ|λ|`` of each head's full OV circuit, ``[L, H]`` in
    ``[-1, 1]``: ``1`` when every eigenvalue is positive real (the head raises the logit of the token it
    attends to — copying), ``-1`` when all are negative.  NaN for a head whose eigenvalues are all zero."""
    lam = ov_eigenvalues(model)
    return lam.sum(-1).real / lam.abs().sum(-1)


# ---- reading a circuit -----------------------------------------------------------------------------------------


class TokenPair(NamedTuple):
    """One entry of a ``[rows, cols]`` circuit: indices, value and (with a tokenizer) decoded tokens."""

    row: int
    col: int
    value: float
    row_token: str | None = None
    col_token: str | None = None


def top_token_pairs(circuit: FactoredMatrix, k: int = 10, tokenizer: Any = None, *, largest: bool = True,
                    chunk_rows: int = 1024) -> list[TokenPair]:
    """The ``k`` largest (``largest=False``: smallest) entries of a 2-D circuit, best first, as
    :class:`TokenPair` ``(row, col, value, row_token, col_token)``.  Computed ``chunk_rows`` rows at a time
    (``A[rows] @ B``), so at most ``chunk_rows x n`` entries exist at once.  With ``tokenizer`` each index is
    decoded with ``tokenizer.decode([id])``.  For a 1-layer model's OV / QK circuits these are its strongest
    skip-trigram pieces (``source → logit``, ``query ← key``)."""
    if not isinstance(circuit, FactoredMatrix) or circuit.ndim != 2:
        raise MechscopeError(f"top_token_pairs needs a 2-D FactoredMatrix (index the layer and head first); got "
                             f"{getattr(circuit, 'shape', type(circuit).__name__)}.")
    m, n = circuit.shape
    if k < 1 or k > m * n:
        raise MechscopeError(f"k must lie in 1..{m * n} (the circuit's {m}x{n} entries), got {k}.")
    if chunk_rows < 1:
        raise MechscopeError(f"chunk_rows must be positive, got {chunk_rows}.")
    A, B = circuit.A, circuit.B
    best_vals = torch.empty(0, dtype=A.dtype, device=A.device)
    best_idx = torch.empty(0, dtype=torch.long, device=A.device)
    for start in range(0, m, chunk_rows):
        block = (A[start:start + chunk_rows] @ B).flatten()
        vals, idx = block.topk(min(k, block.numel()), largest=largest)
        best_vals = torch.cat([best_vals, vals])
        best_idx = torch.cat([best_idx, idx + start * n])
        keep = best_vals.topk(min(k, best_vals.numel()), largest=largest).indices
        best_vals, best_idx = best_vals[keep], best_idx[keep]
    out = []
    for v, i in zip(best_vals.tolist(), best_idx.tolist(), strict=True):
        r, c = divmod(i, n)
        if tokenizer is None:
            out.append(TokenPair(r, c, v))
        else:
            out.append(TokenPair(r, c, v, tokenizer.decode([r]), tokenizer.decode([c])))
    return out
