import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.transformer.factored import FactoredMatrix

D = torch.float64


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=D, generator=torch.Generator().manual_seed(seed))


def _fm(m: int = 12, k: int = 4, n: int = 12, batch: tuple[int, ...] = (), seed: int = 0) -> FactoredMatrix:
    return FactoredMatrix(_rand(*batch, m, k, seed=seed), _rand(*batch, k, n, seed=seed + 1))


def _close(x: torch.Tensor, y: torch.Tensor, tol: float = 1e-10) -> bool:
    return x.shape == y.shape and torch.allclose(x, y, atol=tol, rtol=tol)


def test_properties_and_repr():
    F = FactoredMatrix(_rand(2, 3, 10, 4), _rand(4, 7, seed=1))
    assert F.shape == torch.Size([2, 3, 10, 7]) and F.ndim == 4
    assert (F.ldim, F.mdim, F.rdim) == (10, 4, 7)
    assert F.A.shape == (2, 3, 10, 4) and F.B.shape == (4, 7)
    assert _close(F.AB, F.A @ F.B)
    assert "(2, 3, 10, 7)" in repr(F) and "(4, 7)" in repr(F)
    assert F.dtype == D


@pytest.mark.parametrize("m,k,n", [(12, 4, 12), (9, 3, 15), (15, 5, 8), (3, 6, 10)])
def test_svd_reconstructs_and_matches_svdvals(m, k, n):
    F = _fm(m, k, n, batch=(2, 3))
    U, S, Vh = F.svd()
    q = min(m, k, n)
    assert U.shape == (2, 3, m, q) and S.shape == (2, 3, q) and Vh.shape == (2, 3, q, n)
    assert _close(U @ torch.diag_embed(S) @ Vh, F.AB)
    assert _close(S, torch.linalg.svdvals(F.AB)[..., :q])
    assert _close(F.S, S)
    eye = torch.eye(q, dtype=D).expand(2, 3, q, q)
    assert _close(U.mT @ U, eye) and _close(Vh @ Vh.mT, eye)


def test_collapse_identities():
    F = _fm(10, 3, 8, batch=(2,))
    U, S, Vh = F.svd()
    assert F.collapse_l().shape == (2, 3, 8) and F.collapse_r().shape == (2, 10, 3)
    assert _close(U @ F.collapse_l(), F.AB)
    assert _close(F.collapse_r() @ Vh, F.AB)


def _sorted_complex(x: torch.Tensor) -> torch.Tensor:
    keys = sorted(range(len(x)), key=lambda i: (round(x[i].real.item(), 6), round(x[i].imag.item(), 6)))
    return x[keys]


def test_eigenvalues_match_dense():
    F = _fm(12, 4, 12, batch=(2, 3), seed=3)
    ev = F.eigenvalues
    assert ev.shape == (2, 3, 4) and ev.is_complex()
    for i in range(2):
        for j in range(3):
            dense = torch.linalg.eigvals(F.AB[i, j])
            nonzero = dense[dense.abs() > 1e-8]
            assert len(nonzero) == 4
            assert _close(_sorted_complex(ev[i, j]), _sorted_complex(nonzero), tol=1e-8)
            assert _close(_sorted_complex(ev[i, j]), _sorted_complex(torch.linalg.eigvals(F.BA[i, j])))


def test_norm_matches_dense():
    for m, k, n in [(12, 4, 12), (3, 6, 10), (20, 5, 2)]:
        F = _fm(m, k, n, batch=(2, 3), seed=5)
        norm = F.norm()
        assert norm.shape == (2, 3)
        assert _close(norm, torch.linalg.norm(F.AB, "fro", dim=(-2, -1)))


def test_transpose():
    F = _fm(9, 3, 7, batch=(2,))
    assert F.T.shape == (2, 7, 9) and F.T.mdim == 3
    assert _close(F.T.AB, F.AB.mT)


def test_get_corner():
    F = _fm(10, 4, 8, batch=(2, 3))
    assert _close(F.get_corner(), F.AB[..., :3, :3])
    assert _close(F.get_corner(5), F.AB[..., :5, :5])


def test_batch_broadcast_and_indexing():
    A, B = _rand(2, 1, 8, 3), _rand(3, 3, 6, seed=1)
    F = FactoredMatrix(A, B)
    assert F.shape == (2, 3, 8, 6)
    assert _close(F.AB, A @ B)
    assert F[1].shape == (3, 8, 6) and _close(F[1].AB, (A @ B)[1])
    assert F[1, 2].shape == (8, 6) and _close(F[1, 2].AB, (A @ B)[1, 2])
    assert F[:, 1:].shape == (2, 2, 8, 6) and _close(F[:, 1:].AB, (A @ B)[:, 1:])
    assert _close(F[torch.tensor([1, 0])].AB, (A @ B)[[1, 0]])
    assert _close(F[1, 2].svd()[1], F.svd()[1][1, 2])
    with pytest.raises(MechscopeError, match="too many indices"):
        F[0, 0, 0]
    with pytest.raises(MechscopeError, match="too many indices"):
        _fm()[0]


def test_unsqueeze_and_to():
    F = _fm(6, 2, 5, batch=(3,))
    assert F.unsqueeze(0).shape == (1, 3, 6, 5)
    assert F.unsqueeze(1).shape == (3, 1, 6, 5)
    assert F.unsqueeze(-1).shape == (3, 1, 6, 5)
    assert _close(F.unsqueeze(0).AB, F.AB.unsqueeze(0))
    with pytest.raises(MechscopeError, match="out of range"):
        F.unsqueeze(2)
    G = F.to(torch.float32)
    assert G.A.dtype == torch.float32 and G.B.dtype == torch.float32
    assert F.to("cpu").device.type == "cpu"


@pytest.mark.parametrize("p,expected_mdim", [(8, 4), (2, 2)])
def test_matmul_matrix_right(p, expected_mdim):
    F = _fm(10, 4, 7, batch=(2, 3))
    M = _rand(7, p, seed=9)
    out = F @ M
    assert isinstance(out, FactoredMatrix) and out.mdim == expected_mdim
    assert _close(out.AB, F.AB @ M)
    Mb = _rand(2, 3, 7, p, seed=10)
    assert _close((F @ Mb).AB, F.AB @ Mb)


@pytest.mark.parametrize("p,expected_mdim", [(8, 4), (2, 2)])
def test_matmul_matrix_left(p, expected_mdim):
    F = _fm(10, 4, 7, batch=(2, 3))
    M = _rand(p, 10, seed=9)
    out = M @ F
    assert isinstance(out, FactoredMatrix) and out.mdim == expected_mdim
    assert out.shape == (2, 3, p, 7)
    assert _close(out.AB, M @ F.AB)


def test_matmul_vector():
    F = _fm(10, 4, 7, batch=(2, 3))
    v, w = _rand(7, seed=4), _rand(10, seed=5)
    right, left = F @ v, w @ F
    assert isinstance(right, torch.Tensor) and right.shape == (2, 3, 10)
    assert isinstance(left, torch.Tensor) and left.shape == (2, 3, 7)
    assert _close(right, F.AB @ v) and _close(left, w @ F.AB)


@pytest.mark.parametrize("k1,k2", [(3, 5), (5, 3), (4, 4)])
def test_matmul_factored(k1, k2):
    F1 = FactoredMatrix(_rand(2, 9, k1, seed=1), _rand(2, k1, 8, seed=2))
    F2 = FactoredMatrix(_rand(8, k2, seed=3), _rand(k2, 11, seed=4))
    out = F1 @ F2
    assert isinstance(out, FactoredMatrix) and out.mdim == min(k1, k2)
    assert out.shape == (2, 9, 11)
    assert _close(out.AB, F1.AB @ F2.AB)
    back = F2.T @ F1.T
    assert back.mdim == min(k1, k2) and _close(back.AB, (F1.AB @ F2.AB).mT)


def test_errors():
    with pytest.raises(MechscopeError, match="inner dims differ"):
        FactoredMatrix(_rand(5, 3), _rand(4, 5))
    with pytest.raises(MechscopeError, match="at least 2-D"):
        FactoredMatrix(_rand(5), _rand(5, 5))
    with pytest.raises(MechscopeError, match="do not broadcast"):
        FactoredMatrix(_rand(2, 5, 3), _rand(3, 3, 5))
    F = _fm(6, 2, 5)
    with pytest.raises(MechscopeError, match="square"):
        F.eigenvalues
    with pytest.raises(MechscopeError, match="square"):
        F.BA
    with pytest.raises(MechscopeError, match="matmul dims do not match"):
        F @ _rand(6, 3)
    with pytest.raises(MechscopeError, match="matmul dims do not match"):
        _rand(3, 5) @ F
    with pytest.raises(MechscopeError, match="matmul dims do not match"):
        F @ _rand(6)
    with pytest.raises(MechscopeError, match="matmul dims do not match"):
        F @ _fm(6, 2, 5)
