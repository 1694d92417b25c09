import pytest
import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.training import TrainConfig, lr_at, train


def _batch(step):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(16, 3, generator=g)
    return x, (x @ torch.tensor([[1.0], [-2.0], [0.5]]))


def _loss(out, y):
    mse = (out - y).pow(2).mean()
    return mse, {"mse": float(mse.detach())}


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))


CFG = TrainConfig(steps=12, lr=0.01, warmup=2, checkpoint_every=4, log_every=4)


def test_interrupted_run_resumed_equals_uninterrupted(tmp_path):
    whole = _model()
    log_whole = train(whole, _batch, _loss, CFG, checkpoint=tmp_path / "a.pt", progress=False)

    class Stop(Exception):
        pass

    def stop_at_6(step, model):
        if step == 6:
            raise Stop

    part = _model()
    with pytest.raises(Stop):
        train(part, _batch, _loss, CFG, checkpoint=tmp_path / "b.pt", progress=False, on_step=stop_at_6)
    resumed = _model()
    log_resumed = train(resumed, _batch, _loss, CFG, checkpoint=tmp_path / "b.pt", progress=False)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [r["step"] for r in log_resumed] == [4, 8, 12]
    assert [r["mse"] for r in log_resumed] == pytest.approx([r["mse"] for r in log_whole])


def test_checkpoint_of_another_config_or_corrupt_is_refused(tmp_path):
    train(_model(), _batch, _loss, CFG, checkpoint=tmp_path / "c.pt", progress=False)
    with pytest.raises(MechscopeError, match="another training config"):
        train(_model(), _batch, _loss, TrainConfig(steps=13), checkpoint=tmp_path / "c.pt", progress=False)
    (tmp_path / "d.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MechscopeError, match="cannot be read"):
        train(_model(), _batch, _loss, CFG, checkpoint=tmp_path / "d.pt", progress=False)


def test_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, lr=1.0, warmup=10, final_lr_fraction=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=1e-3)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))


def _nan_from(k):
    """A loss that is NaN from (1-based) step ``k`` on: the model sees a batch of NaNs."""
    def batch(step):
        x, y = _batch(step)
        return (x * float("nan"), y) if step + 1 >= k else (x, y)
    return batch


def test_nan_loss_stops_with_the_step_and_keeps_the_last_finite_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    with pytest.raises(MechscopeError, match=r"diverged at step 7 of 12: the loss is not finite") as err:
        train(_model(), _nan_from(7), _loss, CFG, checkpoint=path, progress=False)
    message = str(err.value)
    assert "lower learning rate" in message and "gradient clipping" in message and "check the data" in message
    assert f"last good checkpoint (step 4) is kept at {path}" in message
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["step"] == 4 and all(torch.isfinite(t).all() for t in state["model"].values())
    # the rerun resumes from step 4 (and, with data that stays finite, finishes as an uninterrupted run would)
    resumed, whole = _model(), _model()
    log = train(resumed, _batch, _loss, CFG, checkpoint=path, progress=False)
    train(whole, _batch, _loss, CFG, progress=False)
    assert [r["step"] for r in log] == [4, 8, 12]
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_nan_weights_on_a_checkpoint_step_never_overwrite_the_checkpoint(tmp_path):
    def poison_at_8(step, model):
        if step == 8:
            with torch.no_grad():
                model[0].weight[0, 0] = float("nan")

    path = tmp_path / "run.pt"
    with pytest.raises(MechscopeError, match="diverged at step 8 of 12: the weights are not finite"):
        train(_model(), _batch, _loss, CFG, checkpoint=path, progress=False, on_step=poison_at_8)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["step"] == 4 and all(torch.isfinite(t).all() for t in state["model"].values())


def test_inf_gradient_is_caught_before_the_optimizer_step():
    def loss(out, y):
        out.register_hook(lambda grad: grad * float("inf"))   # a finite loss whose gradient is not
        return _loss(out, y)

    with pytest.raises(MechscopeError, match="diverged at step 1 of 12: the gradient norm is not finite"):
        train(_model(), _batch, loss, CFG, progress=False)


def test_nan_without_a_checkpoint_says_so():
    with pytest.raises(MechscopeError, match="no checkpoint was being written"):
        train(_model(), _nan_from(1), _loss, CFG, progress=False)
