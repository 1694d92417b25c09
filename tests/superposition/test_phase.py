import math

import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.superposition import phase as P
from mechscope.superposition.toy import ToyConfig, generate_batch


@pytest.mark.parametrize("n,m", [(2, 1), (3, 2)])
def test_expected_loss_matches_monte_carlo_and_converges(n, m):
    gen = torch.Generator().manual_seed(0)
    W, b = torch.randn(3, n, m, generator=gen), torch.randn(3, n, generator=gen) * 0.3
    imp, p = torch.rand(3, n, generator=gen) + 0.5, torch.rand(3, n, generator=gen) * 0.8 + 0.1
    exact = P.expected_loss(W, b, imp, p)
    # quadrature: 24 nodes within 1e-5 of 64 nodes
    assert (exact - P.expected_loss(W, b, imp, p, nodes=64)).abs().max() < 1e-5
    # Monte Carlo: within 4 standard errors on 400k samples
    x = generate_batch(ToyConfig(n, m, 3), 400_000, p, generator=torch.Generator().manual_seed(1)).double()
    out = torch.relu(torch.einsum("bif,ifh,igh->big", x, W.double(), W.double()) + b.double())
    per = ((out - x) ** 2 * imp.double()).mean(2)                      # [samples, instances]
    se = per.std(0) / math.sqrt(len(per))
    assert ((exact - per.mean(0)).abs() <= 4 * se).all(), (exact, per.mean(0), se)


def test_expected_loss_equals_the_closed_forms_of_the_restricted_solutions():
    p = torch.tensor([0.05, 0.3, 4 / 7, 0.9])
    imp = torch.tensor([[1.0, 1.0], [1.0, 0.5], [1.0, 1.0], [1.0, 3.0]])
    pair = P.expected_loss(torch.tensor([[1.0], [-1.0]]).expand(4, 2, 1), torch.zeros(4, 2), imp, p[:, None])
    assert torch.allclose(pair, (imp.sum(1) * p ** 2 / 12).double(), atol=1e-6)
    b = torch.stack([torch.zeros(4), p / 2], 1)
    one = P.expected_loss(torch.tensor([[1.0], [0.0]]).expand(4, 2, 1), b, imp, p[:, None])
    assert torch.allclose(one, (imp[:, 1] * (p / 3 - p ** 2 / 4) / 2).double(), atol=1e-6)
    # at equal importance the two meet at 4/7, and the restricted diagram switches there
    assert abs(float(pair[2] - one[2])) < 1e-6
    assert P.restricted_2_1(torch.ones(2, 2), torch.tensor([0.55, 0.6])) == ["superposition", "feature 1 only"]


def test_known_optima_n2_m1():
    imp = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    p = torch.tensor([[1.0, 1.0], [0.02, 0.02], [0.72, 0.72]])
    sol = P.optimal_solutions(2, 1, imp, p, starts=2, steps=200)
    phases = P.classify_2_1(sol.W)
    assert phases[0] in ("feature 1 only", "feature 2 only") and phases[1] == "superposition"
    # the optimum beats (or equals) every start, and beats the restricted solutions with free b
    assert torch.all(sol.loss[:, None] <= sol.start_losses + 1e-4)
    assert float(sol.loss[2]) < 0.72 ** 2 / 6 - 1e-4                       # below the bias-free antipodal pair
    w = sol.W[2, :, 0].abs().sort(descending=True).values               # the asymmetric pair near [0.93, 0.47]
    assert 0.85 < float(w[0]) < 1.0 and 0.3 < float(w[1]) < 0.6


def test_known_optima_n3_m2_extra_feature():
    imp = torch.tensor([[1.0, 1.0, 10.0], [1.0, 1.0, 0.1], [1.0, 1.0, 1.0]])
    p = torch.tensor([1.0, 1.0, 0.02])[:, None].expand(-1, 3).contiguous()
    sol = P.optimal_solutions(3, 2, imp, p, starts=1, steps=60)
    assert P.classify_extra(sol.W) == ["dedicated dimension", "not represented", "superposition"]


def test_agreement_control_and_transition():
    a = ["superposition"] * 6 + ["feature 1 only"] * 3
    b = ["superposition"] * 6 + ["feature 2 only"] * 3
    assert P.agreement(a, b) == 6 / 9 and P.agreement(a, b, [True] * 9) == 1.0
    control = P.shuffled_agreement(a, a, shuffles=200)
    assert control.shape == (200,) and float(control.mean()) < 0.7 and float(control.max()) <= 1.0
    t = P.transition([0.5, 0.6, 0.7, 0.8], ["superposition", "superposition", "feature 1 only", "feature 2 only"])
    assert t == {"highest_density_in_superposition": 0.6, "lowest_density_without": 0.7, "midpoint": 0.65,
                 "clean": True}
    assert not P.transition([0.5, 0.6], ["feature 1 only", "superposition"])["clean"]
    with pytest.raises(MechscopeError):
        P.agreement([], [])
    with pytest.raises(MechscopeError):
        P.expected_loss(torch.zeros(1, 5, 2), torch.zeros(1, 5), 1.0, 0.1)
