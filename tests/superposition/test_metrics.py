import io
import math

import pytest
import torch
from matplotlib.figure import Figure

from mechscope.errors import MechscopeError
from mechscope.superposition.metrics import (
    dimensions_per_feature,
    feature_dimensionality,
    feature_norms,
    gram,
    interference,
    neuron_kinds,
    neuron_weights,
    plot_dimensionality,
    plot_geometry_2d,
    plot_gram,
    plot_norms,
    superposition_fraction,
)


def polygon(n: int, radius: float = 1.0) -> torch.Tensor:
    a = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    return radius * torch.stack([a.cos(), a.sin()], dim=1)


def tetrahedron() -> torch.Tensor:
    v = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    return v / math.sqrt(3)


def close(a, b, tol=1e-6):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=tol)


def test_orthogonal_features():
    W = torch.eye(2)
    assert close(feature_norms(W), [1, 1])
    assert close(interference(W), [0, 0])
    assert close(feature_dimensionality(W), [1, 1])
    assert close(dimensions_per_feature(W), 1.0)
    assert close(gram(W), torch.eye(2))


def test_antipodal_pair():
    W = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert close(feature_dimensionality(W), [0.5, 0.5])
    assert close(interference(W), [1, 1])
    assert close(dimensions_per_feature(W), 1.0)  # m = 2, ‖W‖² = 2
    assert close(gram(W), [[1, -1], [-1, 1]])


def test_pentagon_and_scale_invariance():
    W = polygon(5)
    assert close(feature_dimensionality(W), [0.4] * 5)
    assert close(dimensions_per_feature(W), 0.4)
    # D_i is scale invariant; m / ‖W‖² is not
    assert close(feature_dimensionality(3 * W), [0.4] * 5)
    assert close(dimensions_per_feature(2 * W), 0.1)
    # Σ_{j≠i} cos²(72°k) = 5/2 - 1
    assert close(interference(W), [1.5] * 5)


def test_tetrahedron():
    W = tetrahedron()
    assert close(feature_norms(W), [1] * 4)
    assert close(feature_dimensionality(W), [0.75] * 4)
    assert close(dimensions_per_feature(W), 0.75)
    assert close(interference(W), [1 / 3] * 4)


def test_zero_feature_gives_zero_not_nan():
    W = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    D = feature_dimensionality(W)
    assert not D.isnan().any()
    assert close(D, [1, 0, 1])
    assert close(interference(W), [0, 0, 0])
    assert close(feature_dimensionality(torch.zeros(3, 2)), [0, 0, 0])
    assert dimensions_per_feature(torch.zeros(3, 2)) == math.inf


def test_batching_over_instances():
    Ws = [torch.eye(2, dtype=torch.float64), polygon(2), polygon(4) * 0.5]
    n = 4
    padded = [torch.cat([w, torch.zeros(n - len(w), 2, dtype=w.dtype)]) for w in Ws]
    W = torch.stack(padded)  # [3, 4, 2]
    for fn in (feature_norms, interference, feature_dimensionality, dimensions_per_feature, gram, superposition_fraction):
        batched = fn(W)
        assert batched.shape[0] == 3
        for i, w in enumerate(padded):
            assert close(batched[i], fn(w)), fn.__name__
    assert feature_dimensionality(W).shape == (3, 4)
    assert gram(W).shape == (3, 4, 4)
    assert dimensions_per_feature(W).shape == (3,)


def test_superposition_fraction():
    assert superposition_fraction(torch.eye(2)) == 0
    assert superposition_fraction(polygon(5)) == 1
    # two orthogonal represented features and two tiny ones: nothing in superposition
    W = torch.tensor([[1.0, 0], [0, 1], [0.01, 0.01], [0, 0]])
    assert superposition_fraction(W) == 0
    assert superposition_fraction(torch.zeros(3, 2)) == 0


def test_neuron_weights_and_kinds():
    # W [features=3, neurons=4]: neuron 0 monosemantic (feature 0), neuron 1 polysemantic
    # (features 1 and 2), neuron 2 dead, neuron 3 monosemantic with a small second weight
    W = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.1],
            [0.0, 0.8, 0.0, 0.0],
            [0.0, -0.6, 0.0, 0.9],
        ]
    )
    assert torch.equal(neuron_weights(W), W.T)
    kinds = neuron_kinds(W, threshold=0.5)
    assert {k: int(v) for k, v in kinds.items()} == {"dead": 1, "monosemantic": 2, "polysemantic": 1}
    # a stricter threshold makes neuron 1 polysemantic still and neuron 3 too at 0.1
    kinds = neuron_kinds(W, threshold=0.1)
    assert {k: int(v) for k, v in kinds.items()} == {"dead": 1, "monosemantic": 1, "polysemantic": 2}
    batched = neuron_kinds(torch.stack([W, torch.eye(3, 4)]))
    assert batched["monosemantic"].tolist() == [2, 3]
    assert batched["dead"].tolist() == [1, 1]
    assert batched["polysemantic"].tolist() == [1, 0]
    with pytest.raises(MechscopeError):
        neuron_kinds(W, threshold=0)


def test_plots_return_figures():
    W = torch.stack([polygon(5).float(), torch.cat([torch.eye(2), torch.zeros(3, 2)])])
    for fig in (
        plot_norms(W),
        plot_norms(W[0], titles=["pentagon"]),
        plot_gram(W),
        plot_geometry_2d(W),
        plot_dimensionality(W, torch.tensor([0.05, 1.0])),
    ):
        assert isinstance(fig, Figure)
    buffer = io.BytesIO()
    plot_dimensionality(W, torch.tensor([0.05, 1.0])).savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue()[:4] == b"\x89PNG"
    with pytest.raises(MechscopeError):
        plot_geometry_2d(tetrahedron())
    with pytest.raises(MechscopeError):
        plot_norms(W, titles=["only one"])
