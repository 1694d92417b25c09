"""Redirected ReLU: Lucid's gradient rule, the first 16 steps only, any nn.ReLU model, restored afterwards."""

from collections import OrderedDict

import torch
from torch import nn

from mechscope.vision.featvis import objectives as obj
from mechscope.vision.featvis import param
from mechscope.vision.featvis.redirect import REDIRECT_STEPS, redirected_relu, redirected_relu_fn
from mechscope.vision.featvis.render import render


def test_forward_is_relu():
    x = torch.randn(4, 5)
    assert torch.equal(redirected_relu_fn(x), torch.relu(x))


def test_gradient_rule_per_batch_element():
    x = torch.tensor([[-1.0, -2.0, 3.0], [-1.0, -1.0, -1.0]], requires_grad=True)
    g = torch.tensor([[-1.0, 1.0, 1.0], [-1.0, 1.0, -2.0]])
    redirected_relu_fn(x).backward(g)
    # row 0: the true ReLU gradient is non-zero, so it is used unchanged
    # row 1: all inputs negative -> pass only gradients that push inputs up (negative loss gradients)
    assert torch.equal(x.grad, torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, -2.0]]))


def test_swaps_every_relu_and_restores_also_inplace():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(inplace=True), nn.Linear(3, 1), nn.ReLU())
    with redirected_relu(model, active=lambda: True) as n:
        assert n == 2
        x = torch.full((1, 2), 1.0)
        model[0].weight.data.fill_(-1.0)
        model[0].bias.data.zero_()
        model[2].weight.data.fill_(1.0)
        out = model(x)
        assert out.grad_fn is not None
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_dead_unit_moves_only_with_redirection():
    # a unit that no image in [0, 1] activates: the plain gradient is exactly zero, redirection moves it
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 1, 1), relu=nn.ReLU()))
    model.conv.weight.data.fill_(1.0)
    model.conv.bias.data.fill_(-10.0)
    make = lambda: param.image(8, decorrelate=False)  # noqa: E731
    plain = render(model, obj.channel("relu", 0), param=make, transforms=[], steps=REDIRECT_STEPS, seed=0,
                   progress=False, redirect_relu=False)
    redirected = render(model, obj.channel("relu", 0), param=make, transforms=[], steps=REDIRECT_STEPS, seed=0,
                        progress=False, redirect_relu=True)
    assert torch.equal(plain.images[REDIRECT_STEPS], render(model, obj.channel("relu", 0), param=make, transforms=[],
                       steps=1, thresholds=[1], seed=0, progress=False, redirect_relu=False).images[1])
    assert redirected.images[REDIRECT_STEPS].mean() > plain.images[REDIRECT_STEPS].mean() + 0.01


def test_redirection_stops_after_16_steps():
    seen = []
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 2, 1), relu=nn.ReLU()))
    original = redirected_relu_fn.__globals__["RedirectedReLUFunction"].apply

    def spy(x):
        seen.append(1)
        return original(x)

    redirected_relu_fn.__globals__["RedirectedReLUFunction"].apply = spy
    try:
        render(model, obj.channel("relu", 0), param=lambda: param.image(8), transforms=[], steps=20, progress=False)
    finally:
        redirected_relu_fn.__globals__["RedirectedReLUFunction"].apply = original
    assert len(seen) == REDIRECT_STEPS == 16
