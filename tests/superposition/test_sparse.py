"""The sparse-input training step equals the dense one on the same batch, its data has the toy distribution, and
training through it reaches the dense route's losses."""

import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.superposition.fast import FastToy
from mechscope.superposition.sparse import SparseToy, _positions, sparse_batches
from mechscope.superposition.toy import ToyConfig, train_toy


def _params(inst, nf, nh, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(inst, nf, nh, generator=g) * 0.3
    b = torch.randn(inst, nf, generator=g) * 0.1 - 0.05
    return [W, b], [torch.empty_like(W), torch.empty_like(b)]


@pytest.mark.parametrize("inst,nf,nh,bs,p", [(1, 40, 3, 32, 0.05), (3, 25, 4, 16, 0.3)])
def test_gradients_and_loss_equal_the_dense_factored_step(inst, nf, nh, bs, p):
    params, grads = _params(inst, nf, nh)
    imp = torch.rand(inst, nf, generator=torch.Generator().manual_seed(1)) + 0.5
    batch = next(sparse_batches(torch.full((inst, nf), p), bs, torch.Generator().manual_seed(2), steps=1))
    x = batch.dense(inst, nf, bs)
    assert batch.index.numel() > 0
    xa = torch.cat([x, torch.ones(inst, 1, bs)], dim=1)
    dense_grads = [torch.empty_like(t) for t in params]
    fast = FastToy("relu_output", params, dense_grads, imp, bs)
    assert fast.factored
    want = fast.backward(xa, True)
    got = SparseToy(params, grads, imp, bs).backward(batch, True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    for a, e in zip(grads, dense_grads):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-7)


def test_positions_are_bernoulli_and_sorted():
    g = torch.Generator().manual_seed(0)
    total, p = 200_000, 0.003
    counts = [(_positions(p, total, g, "cpu")) for _ in range(30)]
    for pos in counts:
        assert bool((pos[1:] > pos[:-1]).all()) and int(pos.min()) >= 0 and int(pos.max()) < total
    n = torch.tensor([float(c.numel()) for c in counts])
    mean, sd = p * total, (p * (1 - p) * total) ** 0.5
    assert abs(float(n.mean()) - mean) < 4 * sd / 30 ** 0.5          # the count is Binomial(total, p)
    assert 0.5 * sd < float(n.std()) < 1.5 * sd
    # the positions are uniform: each tenth of the range holds a tenth of them
    hist = torch.histc(torch.cat(counts).double(), bins=10, min=0, max=total)
    assert float((hist / hist.sum() - 0.1).abs().max()) < 0.01
    assert _positions(0.0, 10, g, "cpu").numel() == 0 and _positions(1.0, 10, g, "cpu").tolist() == list(range(10))


def test_batches_have_the_toy_distribution_per_instance_and_step():
    p = torch.tensor([0.02, 0.2])[:, None].expand(2, 30).contiguous()
    xs = [b.dense(2, 30, 500) for b in sparse_batches(p, 500, torch.Generator().manual_seed(0), steps=5, chunk=2)]
    assert len(xs) == 5 and not torch.equal(xs[0], xs[1])
    x = torch.stack(xs)                                                # [steps, I, F, B]
    density = (x > 0).float().mean(dim=(0, 2, 3))
    torch.testing.assert_close(density, torch.tensor([0.02, 0.2]), atol=0.005, rtol=0)
    on = x[x > 0]
    assert float(on.max()) < 1 and abs(float(on.mean()) - 0.5) < 0.02  # U[0, 1) where active
    # every feature of an instance equally often
    per_feature = (x[:, 1] > 0).float().mean(dim=(0, 2))
    assert float((per_feature - 0.2).abs().max()) < 0.05


def test_training_matches_the_dense_route():
    cfg = ToyConfig(n_features=60, n_hidden=6, n_instances=2)
    p = torch.tensor([[0.02], [0.1]]).expand(2, 60)
    kw = dict(steps=600, batch_size=256, lr=1e-3, weight_decay=0.01, progress=False)
    dense = train_toy(cfg, 1.0, p, seed=0, **kw)
    sparse = train_toy(cfg, 1.0, p, seed=0, sparse_inputs=True, **kw)
    again = train_toy(cfg, 1.0, p, seed=0, sparse_inputs=True, **kw)
    torch.testing.assert_close(sparse.losses, again.losses, rtol=0, atol=0)        # seeded: bit-identical
    torch.testing.assert_close(sparse.losses, dense.losses, rtol=0.1, atol=0)      # same problem, other stream
    untrained = train_toy(cfg, 1.0, p, seed=0, **{**kw, "steps": 0})
    assert bool((sparse.losses < 0.95 * untrained.losses).all())          # and it did learn


def test_sparse_inputs_refuses_what_it_cannot_train():
    p = torch.full((1, 8), 0.1)
    with pytest.raises(MechscopeError, match="relu_output"):
        train_toy(ToyConfig(8, 2, 1, model="relu_hidden"), 1.0, p, steps=2, sparse_inputs=True, progress=False)
    with pytest.raises(MechscopeError, match="one feature probability per instance"):
        train_toy(ToyConfig(8, 2, 1), 1.0, torch.linspace(0.1, 0.5, 8)[None], steps=2, sparse_inputs=True,
                  progress=False)
    with pytest.raises(MechscopeError, match="pairs"):
        train_toy(ToyConfig(8, 2, 1, n_correlated_pairs=1), 1.0, p, steps=2, sparse_inputs=True, progress=False)
