"""``build``, ``scan`` and ``train`` with ``device=``: a model that lives elsewhere (here on the meta device) is
moved to the device asked for and gives what the same model built there gives; a task asked to run on a GPU its
worker lacks runs on the CPU."""

import pytest
import torch
from torch import nn

from mechscope.microscope.build import _compute, _Settings, build
from mechscope.microscope.evidence import Job
from mechscope.microscope.options import Evidence
from mechscope.store import open_store, read_rows
from mechscope.training import TrainConfig, train
from mechscope.vision.evidence.scan import scan


def _fill(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for i, p in enumerate(module.parameters()):
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) * 0.3)
    return module


class Elsewhere(nn.Sequential):
    """A small conv net created on the meta device; ``.to(device)`` records the move and materializes it there
    with the same weights as ``reference()``."""

    def __init__(self):
        super().__init__(nn.Conv2d(3, 3, 3, padding=1, device="meta"), nn.ReLU(),
                         nn.Conv2d(3, 3, 3, padding=1, device="meta"))
        self.moved_to = []

    def to(self, *args, **kwargs):
        device = torch.device(args[0] if args else kwargs["device"])
        self.moved_to.append(device)
        self.to_empty(device=device)
        return _fill(self)


def reference() -> nn.Module:
    return _fill(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1))).eval()


class Images:
    def __init__(self, n=12, size=16):
        self.x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.x)

    def batches(self, batch_size, start=0):
        for lo in range(start, len(self.x), batch_size):
            yield list(range(lo, min(lo + batch_size, len(self.x)))), self.x[lo:lo + batch_size]


def test_scan_moves_the_model_to_the_device_asked_for_and_matches_a_scan_there():
    net = Elsewhere().eval()
    state = scan(net, Images(), ["2"], k=2, batch_size=4, device="cpu", progress=False)
    assert net.moved_to == [torch.device("cpu")]
    want = scan(reference(), Images(), ["2"], k=2, batch_size=4, progress=False)
    assert torch.equal(state.examples["2"].top_index, want.examples["2"].top_index)
    assert state.stats["2"].mean.tolist() == want.stats["2"].mean.tolist()


def test_scan_with_amp_on_the_cpu_is_the_plain_scan():
    a = scan(reference(), Images(), ["2"], k=2, batch_size=4, progress=False, amp=True)
    b = scan(reference(), Images(), ["2"], k=2, batch_size=4, progress=False)
    assert torch.equal(a.examples["2"].top_values, b.examples["2"].top_values)


def test_build_on_the_device_asked_for_writes_the_same_figures(tmp_path):
    fast = Evidence(steps=2, size=16, tuning=False)
    net = Elsewhere().eval()
    assert build(net, "toy", ["2"], tmp_path / "a", evidence=fast, device="cpu", amp=True,
                 progress=False) == {"built": 3, "skipped": 0}
    assert net.moved_to == [torch.device("cpu")]
    build(reference(), "toy", ["2"], tmp_path / "b", evidence=fast, progress=False)
    pngs = []
    for name in ("a", "b"):
        with open_store(tmp_path / name) as store:
            pngs.append(sorted((r["channel"], r["kind"], r["png"]) for r in read_rows(store, "figures", model="toy")))
    assert pngs[0] == pngs[1] and len(pngs[0]) == 6   # featvis + negative per unit, same PNG hashes


def test_a_task_asked_for_a_gpu_its_worker_lacks_runs_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = _Settings("toy", Evidence(steps=2, size=16), 1, device="cuda:3", amp=True)
    done = _compute((reference(), config), Job("2", featvis=(0, 1)))
    assert sorted(row["channel"] for row, _ in done.pngs) == [0, 1]
    assert all(isinstance(png, bytes) and isinstance(row["settings"]["score"], float) for row, png in done.pngs)


def test_train_moves_the_model_and_every_batch_to_the_device():
    net = nn.Linear(2, 1, device="meta")
    moved = []

    def to(device):
        moved.append(torch.device(device))
        net.to_empty(device=device)
        return _fill(net)

    net.to = to

    def batch(step):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(16, 2, generator=g)
        return {"x": x}, x.sum(1, keepdim=True)

    seen = []

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = net

        def forward(self, inputs):
            seen.append(inputs["x"].device)
            return self.inner(inputs["x"])

        def to(self, device):
            self.inner.to(device)
            return self

    def loss(out, y):
        mse = (out - y).pow(2).mean()
        return mse, {"mse": float(mse.detach())}

    log = train(Wrapped(), batch, loss, TrainConfig(steps=30, lr=0.05, warmup=2, log_every=10), progress=False,
                device="cpu")
    assert moved == [torch.device("cpu")] and set(seen) == {torch.device("cpu")}
    assert log[-1]["mse"] < log[0]["mse"]


def test_the_scans_amp_path_accumulates_float_values(monkeypatch):
    """The scan's code under CUDA autocast, exercised with CPU bfloat16 autocast standing in for it."""
    from mechscope.vision.evidence import scan as scan_mod

    monkeypatch.setattr(scan_mod, "autocast", lambda device, amp: torch.autocast("cpu", dtype=torch.bfloat16,
                                                                                  enabled=amp))
    amp = scan(reference(), Images(), ["2"], k=2, batch_size=4, progress=False, amp=True)
    plain = scan(reference(), Images(), ["2"], k=2, batch_size=4, progress=False)
    assert amp.examples["2"].top_values.dtype == torch.float32
    assert not torch.equal(amp.examples["2"].top_values, plain.examples["2"].top_values)   # rounded in bf16
    assert torch.allclose(amp.examples["2"].top_values, plain.examples["2"].top_values, rtol=2e-2, atol=2e-2)
    assert amp.stats["2"].mean.tolist() == pytest.approx(plain.stats["2"].mean.tolist(), rel=2e-2, abs=2e-2)
