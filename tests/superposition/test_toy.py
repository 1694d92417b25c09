import dataclasses
import math

import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.superposition.toy import (
    MODELS,
    ToyConfig,
    ToyModel,
    TrainedToy,
    best_of,
    generate_batch,
    importance_decay,
    targets,
    train_toy,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_config_validation():
    with pytest.raises(MechscopeError, match="n_features"):
        ToyConfig(n_features=0)
    with pytest.raises(MechscopeError, match="relu_output"):
        ToyConfig(model="relu_outptu")
    with pytest.raises(MechscopeError, match="pairs"):
        ToyConfig(n_features=5, n_correlated_pairs=2, n_anticorrelated_pairs=1)
    with pytest.raises(MechscopeError):
        ToyConfig(n_anticorrelated_pairs=-1)
    ToyConfig(n_features=6, n_correlated_pairs=2, n_anticorrelated_pairs=1)


@pytest.mark.parametrize("kind", MODELS)
def test_shapes(kind):
    cfg = ToyConfig(n_features=6, n_hidden=3, n_instances=4, model=kind)
    model = ToyModel(cfg, seed=0)
    names = {name: tuple(p.shape) for name, p in model.named_parameters()}
    if kind == "abs":
        assert names == {"W1": (4, 6, 3), "W2": (4, 3, 6), "b_final": (4, 6)}
    else:
        assert names == {"W": (4, 6, 3), "b_final": (4, 6)}
    assert not model.b_final.any()
    x = generate_batch(cfg, 7, 0.5, generator=gen())
    assert x.shape == (7, 4, 6)
    assert model(x).shape == (7, 4, 6)
    h = model.hidden(x)
    assert h.shape == (7, 4, 3)
    if kind in ("relu_hidden", "abs"):
        assert (h >= 0).all()
    if kind != "linear":
        assert (model(x) >= 0).all()


def test_forward_matches_per_instance_formula():
    cfg = ToyConfig(n_features=5, n_hidden=2, n_instances=3, model="relu_output")
    model = ToyModel(cfg, seed=1)
    with torch.no_grad():
        model.b_final.normal_(generator=gen(2))
    x = generate_batch(cfg, 8, 0.7, generator=gen())
    out = model(x)
    for i in range(3):
        W, b = model.W[i], model.b_final[i]
        assert torch.allclose(out[:, i], torch.relu(x[:, i] @ W @ W.T + b), atol=1e-6)
    cfg_abs = ToyConfig(n_features=5, n_hidden=2, n_instances=2, model="abs")
    m = ToyModel(cfg_abs, seed=0)
    xa = generate_batch(cfg_abs, 8, 0.7, generator=gen())
    want = torch.relu(torch.relu(xa[:, 1] @ m.W1[1]) @ m.W2[1] + m.b_final[1])
    assert torch.allclose(m(xa)[:, 1], want, atol=1e-6)


def test_init_seeded_and_scale_independent_of_instances():
    cfg = ToyConfig(n_features=5, n_hidden=2, n_instances=2)
    assert torch.equal(ToyModel(cfg, seed=3).W, ToyModel(cfg, seed=3).W)
    assert not torch.equal(ToyModel(cfg, seed=3).W, ToyModel(cfg, seed=4).W)
    wide = ToyModel(dataclasses.replace(cfg, n_instances=2000), seed=0).W
    assert abs(wide.std().item() - (2 / 7) ** 0.5) < 0.02


def test_generate_batch_density_and_determinism():
    cfg = ToyConfig(n_features=4, n_hidden=2, n_instances=2)
    p = torch.tensor([[0.1], [0.5]])
    x = generate_batch(cfg, 20_000, p, generator=gen())
    density = (x != 0).float().mean(dim=0)  # [instances, features]
    assert torch.allclose(density, p.expand(2, 4), atol=0.015)
    assert x.min() >= 0 and x.max() <= 1
    assert torch.equal(x, generate_batch(cfg, 20_000, p, generator=gen()))
    assert not torch.equal(x, generate_batch(cfg, 20_000, p, generator=gen(1)))
    assert (generate_batch(cfg, 100, 1.0, generator=gen()) > 0).all()
    assert not generate_batch(cfg, 100, 0.0, generator=gen()).any()
    with pytest.raises(MechscopeError):
        generate_batch(cfg, 10, 1.5)
    with pytest.raises(MechscopeError):
        generate_batch(cfg, 10, torch.ones(3))


def test_correlated_and_anticorrelated_pairs():
    cfg = ToyConfig(n_features=7, n_hidden=2, n_instances=2, n_correlated_pairs=1, n_anticorrelated_pairs=2)
    x = generate_batch(cfg, 20_000, 0.3, generator=gen())
    on = x != 0
    assert torch.equal(on[..., 0], on[..., 1])  # correlated: always together
    assert abs(on[..., 0].float().mean().item() - 0.3) < 0.015
    assert not torch.equal(x[..., 0], x[..., 1])  # values are independent
    for a in (2, 4):  # anticorrelated: never together; pair active with p, each p/2
        assert not (on[..., a] & on[..., a + 1]).any()
        assert abs((on[..., a] | on[..., a + 1]).float().mean().item() - 0.3) < 0.015
        assert abs(on[..., a].float().mean().item() - 0.15) < 0.015
    assert abs(on[..., 6].float().mean().item() - 0.3) < 0.015  # independent feature


def test_abs_task_values_and_targets():
    cfg = ToyConfig(n_features=3, n_hidden=2, model="abs")
    x = generate_batch(cfg, 5000, 1.0, generator=gen())
    assert x.min() < -0.9 and x.max() > 0.9
    assert torch.equal(targets(cfg, x), x.abs())
    relu_cfg = ToyConfig(n_features=3, n_hidden=2)
    assert targets(relu_cfg, x) is x


def test_importance_decay():
    assert torch.allclose(importance_decay(4, 0.9), torch.tensor([1, 0.9, 0.81, 0.729]))


@pytest.fixture(scope="module")
def short_run():
    cfg = ToyConfig(n_features=5, n_hidden=5, n_instances=2, model="relu_output")
    return train_toy(cfg, importance_decay(5, 0.9), torch.tensor([[1.0], [0.3]]), steps=300, batch_size=256, lr=1e-2, progress=False)


def test_short_training_lowers_loss(short_run):
    assert isinstance(short_run, TrainedToy)
    assert short_run.losses.shape == (2,)
    assert short_run.importance.shape == short_run.feature_probability.shape == (2, 5)
    first = torch.tensor(short_run.log[0]["losses"])
    assert (short_run.losses < 0.3 * first).all()
    assert short_run.log[-1]["step"] == 299
    # 5 features in 5 dimensions, dense: every feature gets its own dimension
    norms = short_run.model.W.detach()[0].norm(dim=-1)
    assert (norms > 0.8).all()


def test_training_is_deterministic(short_run):
    cfg = short_run.config
    again = train_toy(cfg, importance_decay(5, 0.9), torch.tensor([[1.0], [0.3]]), steps=300, batch_size=256, lr=1e-2, progress=False)
    assert torch.equal(again.model.W, short_run.model.W)
    assert torch.equal(again.losses, short_run.losses)


def test_schedules_and_continuing_a_model():
    cfg = ToyConfig(n_features=3, n_hidden=2, n_instances=1, model="linear")
    run = train_toy(cfg, 1.0, 0.5, steps=20, batch_size=32, schedule="linear", progress=False)
    assert run.log[0]["lr"] == pytest.approx(1e-3)
    assert run.log[-1]["lr"] == pytest.approx(1e-3 / 20)
    cos = train_toy(cfg, 1.0, 0.5, steps=20, batch_size=32, schedule="cosine", progress=False)
    assert cos.log[-1]["lr"] < 1e-5
    before = run.model.W.detach().clone()
    cont = train_toy(cfg, 1.0, 0.5, steps=5, batch_size=32, model=run.model, progress=False)
    assert cont.model is run.model and not torch.equal(before, run.model.W)
    frozen = train_toy(cfg, 1.0, 0.5, steps=0, batch_size=32, model=run.model, progress=False)
    assert frozen.losses.shape == (1,) and frozen.log == []
    with pytest.raises(MechscopeError):
        train_toy(cfg, 1.0, 0.5, steps=5, schedule="step", progress=False)
    with pytest.raises(MechscopeError):
        train_toy(dataclasses.replace(cfg, n_instances=2), 1.0, 0.5, steps=5, model=run.model, progress=False)


def test_best_of_keeps_lowest_loss_seed():
    cfg = ToyConfig(n_features=4, n_hidden=2, n_instances=3)
    imp = importance_decay(4, 0.8)
    p = torch.tensor([[1.0], [0.2], [0.05]])
    kwargs = dict(steps=60, batch_size=64, lr=1e-2, seed=5, progress=False)
    best = best_of(4, cfg, imp, p, **kwargs)
    assert best.config == cfg
    assert best.model.W.shape == (3, 4, 2) and best.losses.shape == (3,)
    assert torch.equal(best.importance, imp.expand(3, 4)) and torch.equal(best.feature_probability, p.expand(3, 4))
    # the same wide run trained directly: seed s of instance i is instance s * 3 + i
    wide = train_toy(dataclasses.replace(cfg, n_instances=12), imp, p.repeat(4, 1), **kwargs)
    seed_losses = wide.losses.view(4, 3)
    assert torch.equal(best.losses, seed_losses.min(dim=0).values)
    assert (best.losses[None] <= seed_losses).all()
    chosen = seed_losses.argmin(dim=0)
    for i in range(3):
        assert torch.equal(best.model.W[i], wide.model.W[chosen[i] * 3 + i])
        assert torch.equal(best.model.b_final[i], wide.model.b_final[chosen[i] * 3 + i])
    assert best.log[-1]["event"] == "best_of" and best.log[-1]["chosen"] == chosen.tolist()
    with pytest.raises(MechscopeError):
        best_of(0, cfg, imp, p, **kwargs)


# ---- the fast training path: closed-form gradients and the hand-written AdamW --------------------------------------

from mechscope.superposition.fast import FastToy  # noqa: E402
from mechscope.superposition.toy import _batches, _data_seed  # noqa: E402


@pytest.mark.parametrize("kind, n, m", [(k, 5, 3) for k in MODELS] + [("relu_output", 12, 2), ("linear", 12, 2)])
def test_closed_form_gradients_equal_autograd(kind, n, m):
    """(n=12, m=2 takes the factored route through h = Wᵀx, the others the W Wᵀ route.)"""
    cfg = ToyConfig(n_features=n, n_hidden=m, n_instances=2, model=kind)
    model = ToyModel(cfg, seed=0).double()
    with torch.no_grad():
        model.b_final.normal_(generator=gen(1))
    x = generate_batch(cfg, 9, 0.6, generator=gen(2)).double()  # [B, I, F]
    imp = torch.rand(2, n, generator=gen(3), dtype=torch.float64)
    per_instance = ((model(x) - targets(cfg, x)).square() * imp).mean(dim=(0, 2))
    per_instance.sum().backward()
    params = [q.detach().clone() for q in model.parameters()]
    grads = [torch.full_like(q, float("nan")) for q in params]
    fast = FastToy(kind, params, grads, imp, batch_size=9)
    assert fast.factored == (n == 12)
    xa = torch.cat([x.permute(1, 2, 0), torch.ones(2, 1, 9, dtype=torch.float64)], dim=1)  # [I, F+1, B]
    losses = fast.backward(xa, want_loss=True)
    assert torch.allclose(losses, per_instance.detach(), rtol=1e-12, atol=1e-14)
    assert fast.backward(xa, want_loss=False) is None
    for (name, q), grad in zip(model.named_parameters(), grads, strict=True):
        assert torch.allclose(grad, q.grad, rtol=1e-10, atol=1e-13), name


def test_batches_distribution_and_layout():
    cfg = ToyConfig(n_features=4, n_hidden=2, n_instances=3)
    p = torch.tensor([[0.1], [0.5], [0.0]]).expand(3, 4)
    xs = [xa.clone() for xa in _batches(cfg, 2000, p, gen(), "cpu", steps=7)]
    assert len(xs) == 7 and xs[0].shape == (3, 5, 2000)
    x = torch.stack(xs)
    assert (x[:, :, 4] == 1).all()  # the ones row
    on = (x[:, :, :4] != 0).float().mean(dim=(0, 3))  # [I, F]
    assert torch.allclose(on, p, atol=0.01)
    values = x[:, :2, :4][x[:, :2, :4] != 0]
    assert values.min() >= 0 and values.max() <= 1 and abs(values.mean().item() - 0.5) < 0.01
    assert not torch.equal(xs[0], xs[1])
    abs_x = torch.stack([xa.clone() for xa in _batches(dataclasses.replace(cfg, model="abs"), 2000, p, gen(), "cpu", 2)])
    nz = abs_x[:, :2, :4][abs_x[:, :2, :4] != 0]
    assert nz.min() < -0.9 and nz.max() > 0.9 and abs(nz.mean().item()) < 0.02


@pytest.mark.parametrize(
    "kind, pairs", [("relu_output", 0), ("linear", 0), ("relu_hidden", 0), ("abs", 0), ("relu_output", 1)]
)
def test_fast_training_matches_autograd_and_torch_adamw(kind, pairs):
    """train_toy's steps equal a plain autograd + torch.optim.AdamW loop on the same batches (same seed)."""
    cfg = ToyConfig(n_features=5, n_hidden=2, n_instances=3, model=kind, n_correlated_pairs=pairs,
                    n_anticorrelated_pairs=pairs)
    imp, p = importance_decay(5, 0.8), torch.tensor([[1.0], [0.3], [0.05]])
    steps, batch, lr, wd, seed = 12, 64, 1e-2, 0.05, 3
    run = train_toy(cfg, imp, p, steps=steps, batch_size=batch, lr=lr, weight_decay=wd, schedule="cosine",
                    seed=seed, progress=False)
    model = ToyModel(cfg, seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    data = _batches(cfg, batch, p.expand(3, 5), torch.Generator().manual_seed(_data_seed(seed)), "cpu", steps)
    tail = []
    for step, xa in enumerate(data):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        x = xa[:, :5].permute(2, 0, 1)  # [B, I, F]
        per_instance = ((model(x) - targets(cfg, x)).square() * imp).mean(dim=(0, 2))
        opt.zero_grad()
        per_instance.sum().backward()
        opt.step()
        tail.append(per_instance.detach())
    for (name, q), mine in zip(model.named_parameters(), run.model.parameters(), strict=True):
        assert not torch.equal(q, getattr(ToyModel(cfg, seed=seed), name)), name  # it did train
        assert torch.allclose(mine, q, atol=1e-5, rtol=0), name
    assert torch.allclose(run.losses, torch.stack(tail).mean(0), atol=1e-5, rtol=1e-5)
