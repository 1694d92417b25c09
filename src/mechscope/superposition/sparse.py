"""The toy model's training step when its inputs are sparse: data drawn as the list of active entries and the two
products that touch ``x`` computed over that list, so a step at feature density ``p`` costs ``O(p F B)`` for them
instead of ``O(F B)``.

At the paper's geometry-sweep scale (n = 400, m = 30, batch 1024) most densities are small (``1 / (1 - S)`` up to
1000: at ``p = 0.001`` a batch holds about 410 active entries out of 409,600).  The dense step (``fast.FastToy``)
draws a uniform number for every entry and runs five ``F x H x B`` matmuls; here the batch is drawn by its gaps
(geometric, so the count of draws is the count of active entries), ``h = Wᵀ x`` is an ``index_add`` of the active
rows, and the ``x (Wᵀ G)ᵀ`` term of ``dL/dW`` a gather; three dense matmuls remain (``W h``, ``G hᵀ``, ``Gᵀ W``).

Same model, loss and gradients as ``FastToy``'s factored ``"relu_output"`` route (tested equal on the same batch,
``tests/superposition/test_sparse.py``); the same data distribution (each entry active with probability ``p``,
then ``U[0, 1)``), drawn from a different random stream.

Example::

    >>> import torch
    >>> from mechscope.superposition.sparse import sparse_batches
    >>> p = torch.tensor([[0.01] * 50, [0.1] * 50])             # [instances, features]
    >>> batch = next(sparse_batches(p, 64, torch.Generator().manual_seed(0), steps=1))
    >>> batch.index.shape == batch.value.shape, bool((batch.value > 0).all())
    (True, True)
    >>> round(batch.index.numel() / (64 * 50 * 2), 2)          # about the mean density, (0.01 + 0.1) / 2
    0.06
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from mechscope.errors import MechscopeError


@dataclass
class SparseBatch:
    """One step's data for ``instances`` toy models: the active entries of ``x [instances, features, batch]``.

    ``index [K]``: flat positions ``(i * F + f) * B + b`` in increasing order; ``value [K]``: their values;
    ``row [K] = i * F + f`` and ``col [K] = i * B + b``: the row of ``W`` (as ``[I * F, H]``) and of a
    ``[I * B, H]`` batch-major tensor that each entry meets."""

    index: Tensor
    value: Tensor
    row: Tensor
    col: Tensor

    def dense(self, instances: int, features: int, batch: int) -> Tensor:
        """``x [instances, features, batch]`` as a dense tensor (for tests and small checks)."""
        x = torch.zeros(instances * features * batch, dtype=self.value.dtype, device=self.value.device)
        x[self.index] = self.value
        return x.view(instances, features, batch)


def _positions(p: float, total: int, generator: torch.Generator | None, device) -> Tensor:
    """The sorted positions in ``[0, total)`` of independent Bernoulli(``p``) successes, drawn by their gaps
    (``Geometric(p)``: ``floor(log U / log(1 - p)) + 1``); ``[K]`` int64."""
    if p <= 0.0:
        return torch.empty(0, dtype=torch.long, device=device)
    if p >= 1.0:
        return torch.arange(total, device=device)
    mean = p * total
    log_q = math.log1p(-p)
    parts, last = [], -1
    while True:
        n = int(mean + 6.0 * math.sqrt(mean) + 16)
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        gaps = torch.floor(torch.log(u) / log_q).clamp_(max=total).to(torch.long).add_(1)
        pos = torch.cumsum(gaps, 0).add_(last)
        parts.append(pos)
        if int(pos[-1]) >= total:
            break
        last = int(pos[-1])
    pos = torch.cat(parts)
    return pos[: int(torch.searchsorted(pos, total))]


def sparse_batches(p: Tensor, batch_size: int, generator: torch.Generator | None, steps: int,
                   chunk: int = 64) -> Iterator[SparseBatch]:
    """``steps`` batches of the toy models' independent-feature data, each entry of ``x [I, F, B]`` active with
    probability ``p[i, f]`` (``p [instances, features]``, constant over features per instance) and then
    ``U[0, 1)``; drawn ``chunk`` steps at a time (positions over ``chunk * F * B`` entries per instance)."""
    if p.dim() != 2:
        raise MechscopeError(f"sparse_batches needs p [instances, features], got shape {tuple(p.shape)}.")
    inst, nf = p.shape
    if not bool((p == p[:, :1]).all()):
        raise MechscopeError("sparse_batches needs one feature probability per instance (uniform over features).")
    device = p.device
    per_step = nf * batch_size
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        # per instance: its positions in the chunk, cut into steps
        cuts = []
        for i in range(inst):
            pos = _positions(float(p[i, 0]), n * per_step, generator, device)
            bounds = torch.searchsorted(pos, torch.arange(n + 1, device=device) * per_step).tolist()
            cuts.append((pos, bounds))
        for s in range(n):
            pieces = [pos[bounds[s]: bounds[s + 1]] - s * per_step + i * per_step
                      for i, (pos, bounds) in enumerate(cuts)]
            index = torch.cat(pieces) if inst > 1 else pieces[0]
            value = torch.rand(index.numel(), generator=generator, device=device)
            inst_idx = index // per_step
            f = (index % per_step) // batch_size
            b = index % batch_size
            yield SparseBatch(index, value, inst_idx * nf + f, inst_idx * batch_size + b)
        done += n


class SparseToy:
    """The ``"relu_output"`` toy model's loss gradients for a :class:`SparseBatch` (the factored route of
    ``fast.FastToy``: ``h = Wᵀ x``, ``out = ReLU(W h + b)``, ``G = dL/dpre``; ``dL/dW = G hᵀ + x (Wᵀ G)ᵀ``,
    ``dL/db = sum_batch G``).  ``params``/``grads``: ``[W [I, F, H], b [I, F]]`` (views, updated in place by the
    optimizer); ``imp [I, F]`` importances; the loss is ``mean_{batch, features} imp * (out - x)**2`` per instance.
    """

    def __init__(self, params: list[Tensor], grads: list[Tensor], imp: Tensor, batch_size: int) -> None:
        self.params, self.grads = params, grads
        inst, nf, nh = params[0].shape
        self.shape = (inst, nf, nh, batch_size)
        self.imp = imp.to(params[0].dtype)
        self.scale = self.imp * (2.0 / (batch_size * nf))  # [I, F]
        like = dict(dtype=params[0].dtype, device=params[0].device)
        self._h = torch.empty((inst * batch_size, nh), **like)   # hᵀ, batch-major
        self._out = torch.empty((inst, nf, batch_size), **like)
        self._dh = torch.empty((inst, nh, batch_size), **like)
        self._gt = torch.empty((inst, nh, nf), **like)   # (G hᵀ)ᵀ

    def backward(self, batch: SparseBatch, want_loss: bool) -> Tensor | None:
        """Fill ``grads`` for ``batch``; return the per-instance losses ``[I]`` when ``want_loss``."""
        inst, nf, nh, bs = self.shape
        W, b = self.params
        Wf = W.reshape(inst * nf, nh)
        h = self._h.zero_().index_add_(0, batch.col, Wf[batch.row] * batch.value[:, None])  # hᵀ: [I*B, H]
        ht = h.view(inst, bs, nh)
        out = torch.baddbmm(b[:, :, None], W, ht.transpose(1, 2), out=self._out).relu_()  # [I, F, B]
        # G / scale = (out - x) where out > 0, else 0: off the active entries that is ``out`` itself, so only the
        # active entries change (to ``out - x``, or 0 where the ReLU was off)
        flat = out.view(-1)
        on = flat[batch.index]
        missed = on <= 0   # active, ReLU off: d = -x there, but no gradient
        flat[batch.index] = torch.where(missed, 0.0, on - batch.value)
        losses = None
        if want_loss:
            sq = out.square().sum(dim=2)                         # [I, F]
            sq.view(-1).index_add_(0, batch.row, torch.where(missed, batch.value, 0.0).square())
            losses = (sq / bs * self.imp).mean(dim=1)
        G = out.mul_(self.scale[:, :, None])  # dL/dpre: [I, F, B]
        # G hᵀ, computed as h Gᵀ ([H, F]: 1.5x faster than the [F, H] product at F=400, H=30, B=1024)
        self.grads[0].copy_(torch.bmm(ht.transpose(1, 2), G.transpose(1, 2), out=self._gt).transpose(1, 2))
        dh = torch.bmm(W.transpose(1, 2), G, out=self._dh)  # Wᵀ G: [I, H, B]
        dht = dh.transpose(1, 2).reshape(inst * bs, nh)
        self.grads[0].view(inst * nf, nh).index_add_(0, batch.row, dht[batch.col] * batch.value[:, None])
        torch.sum(G, dim=2, out=self.grads[1])
        return losses

    def refresh(self) -> None:
        """Nothing to precompute (the interface of ``fast.FastToy``)."""
