"""Feature visualization on the model's device: the image parameters are created where the model lives, their
random start does not depend on the device, and ``amp`` is a no-op on the CPU."""

import pytest
import torch
from torch import nn

from mechscope.vision.featvis import param as param_mod
from mechscope.vision.featvis.render import RenderOptions, render_units


def _net(device="cpu"):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).to(device).eval()


class _Stop(Exception):
    pass


def test_image_parameters_are_created_on_the_models_device(monkeypatch):
    seen = []
    real = param_mod.image

    def spy(*args, **kwargs):
        seen.append(kwargs.get("device"))
        params, fn = real(*args, **kwargs)
        seen.append(params[0].device)
        raise _Stop

    monkeypatch.setattr(param_mod, "image", spy)
    with pytest.raises(_Stop):   # a model on the meta device: the render asks for meta parameters
        render_units(_net("meta"), ["2:0"], steps=1, size=16, progress=False)
    assert seen == [torch.device("meta"), torch.device("meta")]


def test_a_seed_gives_the_same_start_on_any_device():
    torch.manual_seed(3)
    cpu, _ = param_mod.image(16, batch=2, device="cpu")
    torch.manual_seed(3)
    meta, _ = param_mod.image(16, batch=2, device="meta")
    assert meta[0].device.type == "meta" and meta[0].shape == cpu[0].shape
    torch.manual_seed(3)
    again, _ = param_mod.image(16, batch=2, device=None)
    assert torch.equal(cpu[0], again[0])   # the CPU generator drew both


def test_amp_on_the_cpu_changes_nothing():
    options = RenderOptions(steps=4, size=16, seed=1, progress=False)
    plain = render_units(_net(), ["2:0", "2:1"], options=options)
    amp = render_units(_net(), ["2:0", "2:1"], options=options, amp=True)
    assert torch.equal(plain.final, amp.final)
    assert plain.activations == amp.activations


def test_the_amp_path_keeps_the_objective_and_image_in_float32(monkeypatch):
    """The code that runs under CUDA autocast, exercised with CPU bfloat16 autocast standing in for it."""
    from mechscope.vision.featvis import render as render_mod

    used = []

    def cpu_bf16(device, amp):
        used.append(amp)
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp)

    monkeypatch.setattr(render_mod, "autocast", cpu_bf16)
    options = RenderOptions(steps=4, size=16, seed=1, progress=False)
    amp = render_units(_net(), ["2:0", "2:1"], options=options, amp=True)
    plain = render_units(_net(), ["2:0", "2:1"], options=options)
    assert used == [True] * 4 + [False] * 4
    assert amp.final.dtype == torch.float32 and all(isinstance(t, float) for t in amp.trace)
    assert not torch.equal(amp.final, plain.final)                   # the forward really ran in bfloat16
    # ... and close to float32 (not equal: Adam's normalized steps amplify tiny gradient differences)
    assert (amp.final - plain.final).abs().mean() < 0.02
    assert amp.activations == pytest.approx(plain.activations, rel=0.2)
