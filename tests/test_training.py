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
