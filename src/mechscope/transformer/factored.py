"""``FactoredMatrix``: a lazy product ``A @ B`` of two (batched) matrices.

In "A Mathematical Framework for Transformer Circuits" (Elhage et al. 2021) the QK circuit
``W_E W_Q W_K^T W_E^T`` and the OV circuit ``W_E W_V W_O W_U`` are ``d_vocab x d_vocab`` matrices of rank at
most ``d_head``.  Keeping them as two factors ``A [..., m, k]`` and ``B [..., k, n]`` (``k`` small) lets us take
their SVD, eigenvalues, norms and products without ever materialising ``m x n``.  Leading batch dims (e.g.
``[n_layers, n_heads]``) broadcast between ``A`` and ``B``.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> A = torch.randn(2, 3, 40, 4, dtype=torch.float64, generator=g)
>>> B = torch.randn(4, 40, dtype=torch.float64, generator=g)
>>> F = FactoredMatrix(A, B)
>>> F.shape, F.mdim
(torch.Size([2, 3, 40, 40]), 4)
>>> U, S, Vh = F.svd()
>>> bool(torch.allclose(U @ torch.diag_embed(S) @ Vh, F.AB))
True
>>> F[1, 2].eigenvalues.shape
torch.Size([4])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mechscope.errors import MechscopeError


class FactoredMatrix:
    """The product ``A @ B`` of ``A [..., m, k]`` and ``B [..., k, n]``, shape ``[..., m, n]``, kept factored."""

    def __init__(self, A: Tensor, B: Tensor) -> None:
        if not isinstance(A, Tensor) or not isinstance(B, Tensor):
            raise MechscopeError(f"FactoredMatrix needs two tensors, got {type(A).__name__} and {type(B).__name__}.")
        if A.ndim < 2 or B.ndim < 2:
            raise MechscopeError(f"FactoredMatrix factors must be at least 2-D ([..., m, k] and [..., k, n]); "
                                 f"got A {tuple(A.shape)} and B {tuple(B.shape)}.")
        if A.shape[-1] != B.shape[-2]:
            raise MechscopeError(f"FactoredMatrix inner dims differ: A {tuple(A.shape)} has k={A.shape[-1]} columns "
                                 f"but B {tuple(B.shape)} has {B.shape[-2]} rows; they must be equal.")
        try:
            self._batch = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        except RuntimeError as err:
            raise MechscopeError(f"FactoredMatrix batch dims do not broadcast: A {tuple(A.shape[:-2])} and "
                                 f"B {tuple(B.shape[:-2])}.") from err
        self._A, self._B = A, B

    # ------------------------------------------------------------------ shapes
    @property
    def A(self) -> Tensor:
        """The left factor, ``[..., m, k]``."""
        return self._A

    @property
    def B(self) -> Tensor:
        """The right factor, ``[..., k, n]``."""
        return self._B

    @property
    def ldim(self) -> int:
        """``m``, the number of rows of ``A @ B``."""
        return self._A.shape[-2]

    @property
    def rdim(self) -> int:
        """``n``, the number of columns of ``A @ B``."""
        return self._B.shape[-1]

    @property
    def mdim(self) -> int:
        """``k``, the inner dim shared by the factors (an upper bound on the rank)."""
        return self._A.shape[-1]

    @property
    def shape(self) -> torch.Size:
        """The broadcast shape ``(..., m, n)`` of ``A @ B``."""
        return torch.Size((*self._batch, self.ldim, self.rdim))

    @property
    def ndim(self) -> int:
        """``len(self.shape)``."""
        return len(self._batch) + 2

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the factors."""
        return self._A.dtype

    @property
    def device(self) -> torch.device:
        """The device of the factors."""
        return self._A.device

    def __repr__(self) -> str:
        return (f"FactoredMatrix(shape={tuple(self.shape)}, A={tuple(self._A.shape)}, B={tuple(self._B.shape)}, "
                f"dtype={self.dtype})")

    def _expanded(self) -> tuple[Tensor, Tensor]:
        """``A`` and ``B`` expanded (views, no copy) to the common batch shape."""
        return (self._A.expand(*self._batch, *self._A.shape[-2:]), self._B.expand(*self._batch, *self._B.shape[-2:]))

    # ------------------------------------------------------------------ algebra
    @property
    def T(self) -> FactoredMatrix:
        """The transpose ``B^T A^T``, shape ``[..., n, m]``."""
        return FactoredMatrix(self._B.mT, self._A.mT)

    @property
    def AB(self) -> Tensor:
        """The materialised product ``A @ B``, ``[..., m, n]`` (only for small ``m`` and ``n``)."""
        return self._A @ self._B

    @property
    def BA(self) -> Tensor:
        """``B @ A``, ``[..., k, k]``; needs a square product (``m == n``)."""
        self._need_square("BA")
        return self._B @ self._A

    def _need_square(self, what: str) -> None:
        if self.ldim != self.rdim:
            raise MechscopeError(f"{what} needs a square FactoredMatrix (m == n); got shape {tuple(self.shape)}.")

    def __matmul__(self, other: Tensor | FactoredMatrix) -> Tensor | FactoredMatrix:
        """``F @ other``: a ``[..., n, p]`` matrix or FactoredMatrix gives a FactoredMatrix ``[..., m, p]`` whose
        inner dim is as small as the factors allow; a 1-D ``[n]`` vector gives a tensor ``[..., m]``."""
        if isinstance(other, FactoredMatrix):
            self._check_inner(self.rdim, other.ldim, other.shape)
            if self.mdim <= other.mdim:  # inner dim k1
                return FactoredMatrix(self._A, (self._B @ other.A) @ other.B)
            return FactoredMatrix(self._A @ (self._B @ other.A), other.B)  # inner dim k2
        if not isinstance(other, Tensor):
            return NotImplemented
        if other.ndim == 0:
            raise MechscopeError("cannot matmul a FactoredMatrix with a 0-D tensor.")
        self._check_inner(self.rdim, other.shape[-2] if other.ndim > 1 else other.shape[0], other.shape)
        if other.ndim == 1:
            return (self._A @ (self._B @ other[:, None]))[..., 0]
        p = other.shape[-1]
        if p < self.mdim:  # fold everything into the left factor: inner dim p
            return FactoredMatrix(self._A @ (self._B @ other), _eye(p, other))
        return FactoredMatrix(self._A, self._B @ other)

    def __rmatmul__(self, other: Tensor) -> Tensor | FactoredMatrix:
        """``other @ F``: a ``[..., p, m]`` matrix gives a FactoredMatrix ``[..., p, n]`` with the smaller inner
        dim; a 1-D ``[m]`` vector gives a tensor ``[..., n]``."""
        if not isinstance(other, Tensor):
            return NotImplemented
        if other.ndim == 0:
            raise MechscopeError("cannot matmul a 0-D tensor with a FactoredMatrix.")
        self._check_inner(other.shape[-1], self.ldim, other.shape, on_left=True)
        if other.ndim == 1:
            return ((other[None, :] @ self._A) @ self._B)[..., 0, :]
        p = other.shape[-2]
        if p < self.mdim:  # fold everything into the right factor: inner dim p
            return FactoredMatrix(_eye(p, other), (other @ self._A) @ self._B)
        return FactoredMatrix(other @ self._A, self._B)

    def _check_inner(self, left: int, right: int, other_shape: torch.Size, on_left: bool = False) -> None:
        if left != right:
            lhs, rhs = (tuple(other_shape), tuple(self.shape)) if on_left else (tuple(self.shape), tuple(other_shape))
            raise MechscopeError(f"matmul dims do not match: {lhs} @ {rhs} needs the left's last dim ({left}) to "
                                 f"equal the right's matrix-row dim ({right}).")

    # ------------------------------------------------------------------ spectra and norms
    def svd(self) -> tuple[Tensor, Tensor, Tensor]:
        """Thin SVD of ``A @ B`` from the factors: ``U [..., m, q]``, ``S [..., q]`` (descending),
        ``Vh [..., q, n]`` with ``U @ diag(S) @ Vh == A @ B``, where ``q = min(m, k, n)`` (``= k`` for
        ``k <= m, n``).  Note the third output is ``Vh`` (rows are right singular vectors), as in
        ``torch.linalg.svd``.

        With ``A = Ua Sa Va^T`` and ``B = Ub Sb Vb^T``, ``A @ B = Ua M Vb^T`` with the small
        ``M = diag(Sa) Va^T Ub diag(Sb)``; if ``M = Um S Vm^T`` then ``U = Ua Um`` and ``Vh = Vm^T Vb^T``.
        """
        Ua, Sa, Vha = torch.linalg.svd(self._A, full_matrices=False)
        Ub, Sb, Vhb = torch.linalg.svd(self._B, full_matrices=False)
        middle = Sa[..., :, None] * (Vha @ Ub) * Sb[..., None, :]
        Um, S, Vhm = torch.linalg.svd(middle, full_matrices=False)
        return Ua @ Um, S, Vhm @ Vhb

    @property
    def S(self) -> Tensor:
        """The singular values of ``A @ B``, ``[..., q]``, descending (see :meth:`svd`)."""
        return self.svd()[1]

    @property
    def eigenvalues(self) -> Tensor:
        """The eigenvalues of ``B @ A``, complex ``[..., k]``: the non-zero eigenvalues of the square ``A @ B``
        (plus zeros where ``B @ A`` is singular).  Needs ``m == n``."""
        self._need_square("eigenvalues")
        return torch.linalg.eigvals(self._B @ self._A)

    def norm(self) -> Tensor:
        """The Frobenius norm of ``A @ B``, ``[...]``, from the factors: with thin QRs ``A = Qa Ra`` and
        ``B^T = Qb Rb``, ``||A B||_F = ||Ra Rb^T||_F`` (orthonormal ``Qa``, ``Qb`` preserve the norm)."""
        Ra = torch.linalg.qr(self._A, mode="r").R
        Rb = torch.linalg.qr(self._B.mT, mode="r").R
        return torch.linalg.matrix_norm(Ra @ Rb.mT, ord="fro")

    def collapse_l(self) -> Tensor:
        """``diag(S) @ Vh``, ``[..., q, n]``, so that ``A @ B == U @ collapse_l()``."""
        _, S, Vh = self.svd()
        return S[..., :, None] * Vh

    def collapse_r(self) -> Tensor:
        """``U @ diag(S)``, ``[..., m, q]``, so that ``A @ B == collapse_r() @ Vh``."""
        U, S, _ = self.svd()
        return U * S[..., None, :]

    def get_corner(self, k: int = 3) -> Tensor:
        """The top-left ``[..., k, k]`` block of ``A @ B`` (from the first ``k`` rows of ``A`` and columns of ``B``)."""
        return self._A[..., :k, :] @ self._B[..., :, :k]

    # ------------------------------------------------------------------ batch dims
    def __getitem__(self, idx: Any) -> FactoredMatrix:
        """Index the leading batch dims only (ints, slices, index tensors); returns a FactoredMatrix."""
        idx = idx if isinstance(idx, tuple) else (idx,)
        used = 0
        for i in idx:
            if i is None or i is Ellipsis:
                raise MechscopeError("FactoredMatrix indexing takes ints, slices or index tensors over the batch "
                                     "dims; None and ... are not supported.")
            used += i.ndim if isinstance(i, Tensor) and i.dtype == torch.bool else 1
        if used > len(self._batch):
            raise MechscopeError(f"too many indices ({used}) for a FactoredMatrix of shape {tuple(self.shape)}: it "
                                 f"has {len(self._batch)} batch dim(s); the last two (m, n) cannot be indexed.")
        A, B = self._expanded()
        return FactoredMatrix(A[idx], B[idx])

    def unsqueeze(self, dim: int) -> FactoredMatrix:
        """Insert a size-1 batch dim at ``dim`` (in ``[-nb - 1, nb]``, ``nb`` the number of batch dims)."""
        nb = len(self._batch)
        if not -nb - 1 <= dim <= nb:
            raise MechscopeError(f"unsqueeze dim {dim} is out of range for {nb} batch dim(s): valid is "
                                 f"{-nb - 1}..{nb} (the matrix dims cannot move).")
        dim = dim + nb + 1 if dim < 0 else dim
        A, B = self._expanded()
        return FactoredMatrix(A.unsqueeze(dim), B.unsqueeze(dim))

    def to(self, *args: Any, **kwargs: Any) -> FactoredMatrix:
        """Both factors moved/cast with ``Tensor.to(*args, **kwargs)`` (dtype, device)."""
        return FactoredMatrix(self._A.to(*args, **kwargs), self._B.to(*args, **kwargs))


def _eye(p: int, like: Tensor) -> Tensor:
    return torch.eye(p, dtype=like.dtype, device=like.device)
