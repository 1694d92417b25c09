"""The device argument and --amp, tested on the CPU: device strings are checked before any work (a clear error
naming the valid forms, or saying there is no CUDA), tasks fall back to the CPU on a worker without the asked-for
GPU, tensors created inside follow the model's device, and --amp is a no-op on the CPU."""

import pytest
import torch
from torch import nn

from mechscope import devices
from mechscope.devices import autocast, checked_device, portable, worker_device
from mechscope.errors import MechscopeError


def test_checked_device_accepts_cpu_and_names_the_valid_forms_for_a_wrong_string():
    assert checked_device("cpu") == torch.device("cpu")
    assert checked_device(" cpu ") == torch.device("cpu")
    for bad in ("gpu", "cuda:x", "tpu", "", "cuda:-1"):
        with pytest.raises(MechscopeError, match=r"unknown device .*valid: cpu, cuda, cuda:N"):
            checked_device(bad)


def test_checked_device_refuses_cuda_on_a_machine_without_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:0", "cuda:1"):
        with pytest.raises(MechscopeError, match=r"no CUDA GPU .*use --device cpu"):
            checked_device(name)


def test_checked_device_refuses_a_gpu_index_the_machine_lacks(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert checked_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(MechscopeError, match=r"has 2 CUDA GPU\(s\): cuda:0 \.\. cuda:1"):
        checked_device("cuda:2")


def test_a_worker_without_the_gpu_asked_for_runs_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker_device("cuda:3") == torch.device("cpu")
    assert worker_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert worker_device("cuda:3") == torch.device("cuda")      # fewer GPUs here: any of them
    assert worker_device("cuda:0") == torch.device("cuda", 0)


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_autocast_is_bf16_on_cuda_and_nothing_on_the_cpu():
    x = torch.randn(4, 4)
    with autocast("cpu", True):
        assert (x @ x).dtype == torch.float32
    ctx = autocast("cuda", True)
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    assert not isinstance(autocast("cuda", False), torch.autocast)


def test_portable_keeps_a_cpu_model_and_the_in_process_one():
    net = nn.Linear(2, 2)
    assert portable(net, "ray") is net and portable(net, "in-process") is net
    meta = nn.Linear(2, 2, device="meta")
    assert portable(meta, "in-process") is meta


def test_amp_message_names_the_cpu():
    assert "no effect on the CPU" in devices.AMP_ON_CPU
