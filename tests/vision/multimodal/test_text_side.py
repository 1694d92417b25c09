"""Unit directions and the text-side maximal response: a planted direction's texts are recovered by all three ways
of getting a direction; a random direction is a null that aligns far worse."""

import pytest
import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.multimodal import (gradient_directions, linear_head_directions, regression_directions,
                                         text_side_response, unit_directions)

D, U, T = 16, 6, 50


@pytest.fixture(scope="module")
def planted():
    """Text embeddings [T, D]; an image head pool -> Linear(U, D) whose unit 2 writes text 7's embedding."""
    g = torch.Generator().manual_seed(0)
    texts = [f"text {i}" for i in range(T)]
    emb = torch.randn(T, D, generator=g)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(U, D))
    with torch.no_grad():
        head[2].weight.copy_(torch.randn(D, U, generator=g))
        head[2].weight[:, 2] = 3.0 * emb[7] + 0.1 * torch.randn(D, generator=g)
    acts = torch.rand(300, U, 3, 3, generator=g)
    return texts, emb, head, acts


def test_linear_head_direction_finds_the_planted_text(planted):
    texts, emb, head, _ = planted
    dirs = linear_head_directions(head[2].weight)
    assert dirs.shape == (U, D)
    r = text_side_response(dirs[2], emb, texts, k=3)
    assert r.texts[0] == "text 7" and int(r.indices[0]) == 7
    assert r.scores[0] > 0.99
    assert (r.scores[:-1] >= r.scores[1:]).all()                     # best first
    assert r.rows()[0] == {"text": "text 7", "index": 7, "score": pytest.approx(float(r.scores[0]))}


def test_gradient_and_regression_directions_recover_the_linear_head(planted):
    texts, emb, head, acts = planted
    w = head[2].weight.detach().T
    assert torch.allclose(gradient_directions(head, acts), w, atol=1e-5)
    with torch.no_grad():
        image_emb = head(acts)
    assert torch.allclose(regression_directions(acts, image_emb, ridge=0.0), w, atol=1e-3)
    assert text_side_response(regression_directions(acts, image_emb)[2], emb, texts, k=1).texts == ["text 7"]
    # unit_directions picks the way the arguments allow
    assert torch.equal(unit_directions(weight=head[2].weight), linear_head_directions(head[2].weight))
    assert torch.equal(unit_directions(head=head, acts=acts), gradient_directions(head, acts))
    assert torch.equal(unit_directions(acts=acts, embeddings=image_emb), regression_directions(acts, image_emb))


def test_gradient_direction_of_a_nonlinear_head_is_its_mean_local_response():
    torch.manual_seed(0)
    head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 2 * 2, 5), nn.Tanh())
    acts = torch.randn(7, 4, 2, 2)
    dirs = gradient_directions(head, acts)
    eps = 1e-3
    for u in range(4):                                                # central finite differences
        shift = torch.zeros(1, 4, 1, 1)
        shift[0, u] = eps
        with torch.no_grad():
            fd = (head(acts + shift).mean(0) - head(acts - shift).mean(0)) / (2 * eps)
        assert torch.allclose(dirs[u], fd, atol=1e-3)


def test_gradient_directions_of_a_head_vmap_cannot_batch():
    class Double(torch.autograd.Function):                            # a backward through numpy: vmap refuses it
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, grad):
            return torch.from_numpy(2 * grad.detach().numpy())

    linear = nn.Linear(4, 3)
    acts = torch.rand(5, 4, 2, 2)
    with pytest.raises(RuntimeError):                                 # the vectorized Jacobian fails here ...
        torch.autograd.functional.jacobian(lambda s: linear(Double.apply(acts + s.view(1, 4, 1, 1)).mean((2, 3))),
                                           torch.zeros(4), vectorize=True)
    dirs = gradient_directions(lambda a: linear(Double.apply(a).mean((2, 3))), acts)       # ... the loop does not
    assert torch.allclose(dirs, 2 * linear.weight.T, atol=1e-6)


def test_random_direction_is_a_null(planted):
    texts, emb, head, _ = planted
    g = torch.Generator().manual_seed(5)
    nulls = [float(text_side_response(torch.randn(D, generator=g), emb, texts, k=1).scores[0]) for _ in range(20)]
    planted_score = float(text_side_response(linear_head_directions(head[2].weight)[2], emb, texts, k=1).scores[0])
    assert max(nulls) < 0.85 < planted_score


@pytest.mark.parametrize("call, message", [
    (lambda: text_side_response(torch.ones(2, 3), torch.ones(4, 3), list("abcd")), r"one vector \[D\]"),
    (lambda: text_side_response(torch.ones(3), torch.ones(4, 2), list("abcd")), r"\[T, 3\]"),
    (lambda: text_side_response(torch.ones(3), torch.ones(4, 3), list("abc")), "one text per row"),
    (lambda: text_side_response(torch.ones(3), torch.ones(4, 3), list("abcd"), k=0), "positive"),
    (lambda: text_side_response(torch.zeros(3), torch.ones(4, 3), list("abcd")), "all zeros"),
    (lambda: linear_head_directions(torch.ones(3)), r"\[D, U\]"),
    (lambda: regression_directions(torch.ones(5, 2), torch.ones(4, 3)), "one row per item"),
    (lambda: regression_directions(torch.ones(5, 2), torch.ones(5, 3), ridge=-1), ">= 0"),
    (lambda: gradient_directions(lambda a: a.sum(), torch.ones(3, 2)), r"\[N, D\]"),
    (lambda: unit_directions(acts=torch.ones(3, 2)), "exactly one way"),
    (lambda: unit_directions(weight=torch.ones(3, 2), acts=torch.ones(3, 2)), "exactly one way"),
    (lambda: unit_directions(head=torch.nn.Identity(), acts=torch.ones(3, 2), embeddings=torch.ones(3, 2)),
     "exactly one way"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(MechscopeError, match=message):
        call()
