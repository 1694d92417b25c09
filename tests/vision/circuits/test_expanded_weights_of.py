"""Tests of weights.expanded_weights_of / graph.upstream_of: one linearized forward pass for many units gives, for
each, bitwise the tensor (and the rows) of its own call; errors name what was wrong."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.circuits.graph import upstream, upstream_of
from mechscope.vision.circuits.weights import expanded_weights, expanded_weights_of


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 5, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(5, 4, 3, padding=1)).eval()


def test_each_unit_gets_bitwise_its_own_expanded_weights():
    net = _net()
    units = ["5:0", "5:3@1,2", "5:1", "5:3"]
    many = expanded_weights_of(net, "1", units, 16)
    assert len(many) == len(units)
    for unit, w in zip(units, many):
        alone = expanded_weights(net, "1", unit, 16)
        assert w.shape == alone.shape and torch.equal(w, alone), unit
    uncropped = expanded_weights_of(net, "1", units[:2], 16, crop=False)
    assert torch.equal(uncropped[1], expanded_weights(net, "1", "5:3@1,2", 16, crop=False))
    assert expanded_weights_of(net, "1", [], 16) == []


def test_upstream_of_gives_the_rows_of_upstream_per_unit():
    net = _net()
    for by in ("strength", "inhibitory"):
        rows = upstream_of(net, ["5:0", "5:2", "5:1"], "4", 16, k=3, by=by)
        for c, got in zip((0, 2, 1), rows):
            want = upstream(net, f"5:{c}", "4", 16, k=3, by=by)
            assert [(r.unit, r.excitatory, r.inhibitory) for r in got] == [
                (r.unit, r.excitatory, r.inhibitory) for r in want]
            assert all(torch.equal(a.weights, b.weights) for a, b in zip(got, want))


def test_errors_name_the_problem():
    net = _net()
    with pytest.raises(MechscopeError, match="one layer"):
        expanded_weights_of(net, "1", ["5:0", "4:1"], 16)
    with pytest.raises(MechscopeError, match="expected a unit"):
        expanded_weights_of(net, "1", ["5"], 16)
    with pytest.raises(MechscopeError, match="outside"):
        expanded_weights_of(net, "1", ["5:0", "5:1@9,9"], 16)
    with pytest.raises(MechscopeError, match="own layer"):
        upstream_of(net, ["5:0"], "5", 16)
