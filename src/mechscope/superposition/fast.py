"""The toy models' training step in closed form: gradients of the importance-weighted MSE without autograd and a
hand-written AdamW step on one flat tensor, so that ``toy.train_toy`` spends its time in a few batched matmuls
instead of per-op overhead.  Tested equal to autograd and ``torch.optim.AdamW`` (``tests/superposition/
test_toy.py``)."""

from __future__ import annotations

import torch
from torch import Tensor

_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8  # torch.optim.AdamW's defaults


class FastToy:
    """The training step's maths for :func:`train_toy` in closed form, on preallocated buffers.

    ``params``: ``[W, b_final]`` or for ``"abs"`` ``[W1, W2, b_final]`` (views into one flat tensor); ``grads``: same
    shapes, written by :meth:`backward`; ``imp [instances, n_features]``.  The loss is
    ``sum_i mean_{batch, features} imp * (out - target)**2``, as in :func:`train_toy`.

    ``"relu_output"``/``"linear"`` use ``out = ReLU(x M + b)`` with ``M = W Wᵀ`` (symmetric):
    ``dL/dM = xᵀ G``, ``dL/dW = (dM + dMᵀ) W``, ``dL/db = sum_batch G`` with ``G = dL/dpre``; the
    ``[M | b]`` matrix meets the ones row of the batch (see :func:`_batches`), so the forward is one batched
    matmul and ``xᵀ G`` carries ``dL/db`` in its last row.  The importance weights scale the small
    ``[instances, features, features]`` products, not the batch-sized tensors.  That costs about ``2 F² B`` per
    step; when the hidden layer is narrow (``5 H < 2 F``, e.g. n=200, m=20) the factored route through
    ``h = Wᵀ x`` costs ``5 F H B`` and is used instead (``factored``):
    ``dL/dW = G hᵀ + x (Wᵀ G)ᵀ``, ``dL/db = sum_batch G``.
    """

    def __init__(self, kind: str, params: list[Tensor], grads: list[Tensor], imp: Tensor, batch_size: int) -> None:
        self.kind, self.params, self.grads = kind, params, grads
        inst, nf = imp.shape
        self.nf = nf
        self.imp = imp.to(params[0].dtype)
        self.scale = self.imp * (2.0 / (batch_size * nf))  # [I, F]: dL/dout = scale * (out - target)
        self.factored = kind in ("relu_output", "linear") and 5 * params[0].shape[-1] < 2 * nf
        if kind in ("relu_output", "linear") and not self.factored:
            self.Q = torch.empty((inst, nf + 1, nf), dtype=params[0].dtype, device=params[0].device)  # [M; bᵀ]
            self.refresh()

    def refresh(self) -> None:
        """Recompute what the forward needs from the parameters (after they changed)."""
        if self.kind in ("relu_output", "linear") and not self.factored:
            W, b = self.params
            torch.bmm(W, W.transpose(1, 2), out=self.Q[:, : self.nf])
            self.Q[:, self.nf].copy_(b)

    def backward(self, xa: Tensor, want_loss: bool) -> Tensor | None:
        """Fill ``grads`` for the batch ``xa [instances, n_features + 1, batch]`` (ones last row); return the
        per-instance losses ``[instances]`` when ``want_loss``, else ``None``."""
        kind, nf, grads = self.kind, self.nf, self.grads
        x = xa[:, :nf]  # [I, F, B]
        if self.factored:
            W, b = self.params
            h = torch.bmm(W.transpose(1, 2), x)  # [I, H, B]
            out = torch.baddbmm(b[:, :, None], W, h)
            if kind == "relu_output":
                out.relu_()
            d = out - x
        elif kind in ("relu_output", "linear"):
            out = torch.bmm(self.Q.transpose(1, 2), xa)  # (x M + b)ᵀ: [I, F, B]
            if kind == "relu_output":
                out.relu_()
            d = out - x
        else:
            W1 = self.params[0]
            b = self.params[-1][:, :, None]
            h = torch.bmm(W1.transpose(1, 2), x).relu_()  # [I, H, B]
            W2t = W1 if kind == "relu_hidden" else self.params[1].transpose(1, 2)  # [I, F, H]
            out = torch.baddbmm(b, W2t, h).relu_()
            d = out - (x.abs() if kind == "abs" else x)
        losses = None
        if want_loss:
            losses = (d.square().mean(dim=2) * self.imp).mean(dim=1)
        g = d if kind == "linear" else torch.ops.aten.threshold_backward(d, out, 0)  # dL/dpre / scale
        if self.factored:
            G = g.mul_(self.scale[:, :, None])  # dL/dpre [I, F, B]
            W = self.params[0]
            torch.bmm(G, h.transpose(1, 2), out=grads[0])  # G hᵀ
            grads[0].baddbmm_(x, torch.bmm(W.transpose(1, 2), G).transpose(1, 2))  # + x (Wᵀ G)ᵀ
            torch.sum(G, dim=2, out=grads[1])
            return losses
        if kind in ("relu_output", "linear"):
            D = torch.bmm(xa, g.transpose(1, 2)).mul_(self.scale[:, None, :])  # [xᵀ G; sum_batch G]: [I, F+1, F]
            dM = D[:, :nf]
            torch.bmm(dM + dM.transpose(1, 2), self.params[0], out=grads[0])
            grads[1].copy_(D[:, nf])
            return losses
        s = self.scale[:, :, None]  # [I, F, 1]
        torch.mul(g.sum(dim=2), self.scale, out=grads[-1])
        if kind == "relu_hidden":
            W = self.params[0]
            dh = torch.bmm((W * s).transpose(1, 2), g)  # Wᵀ G: [I, H, B]
            torch.bmm(g, h.transpose(1, 2), out=grads[0]).mul_(s)  # G hᵀ, the second use of W
            grads[0].baddbmm_(x, torch.ops.aten.threshold_backward(dh, h, 0).transpose(1, 2))
            return losses
        W2 = self.params[1]  # [I, H, F]
        torch.bmm(h, g.transpose(1, 2), out=grads[1]).mul_(self.scale[:, None, :])  # h Gᵀ
        dh = torch.bmm(W2 * self.scale[:, None, :], g)  # W2 G: [I, H, B]
        torch.bmm(x, torch.ops.aten.threshold_backward(dh, h, 0).transpose(1, 2), out=grads[0])
        return losses


def adamw_step(param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: int, lr: float,
                weight_decay: float) -> None:
    """One step of ``torch.optim.AdamW`` (default betas and eps, no amsgrad), its single-tensor algorithm, in place."""
    if weight_decay != 0:
        param.mul_(1 - lr * weight_decay)
    exp_avg.lerp_(grad, 1 - _BETA1)
    exp_avg_sq.mul_(_BETA2).addcmul_(grad, grad, value=1 - _BETA2)
    step_size = lr / (1 - _BETA1**step)
    denom = exp_avg_sq.sqrt().div_((1 - _BETA2**step) ** 0.5).add_(_EPS)
    param.addcdiv_(exp_avg, denom, value=-step_size)
