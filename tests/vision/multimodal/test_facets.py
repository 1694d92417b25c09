"""Faceted feature visualization: the probe recovers a planted facet direction, and the faceted objective's value on
a real network (ShapesNet, random weights) is the sum of its parts."""

import pytest
import torch
import torch.nn.functional as F

from mechscope.capture import capture
from mechscope.errors import MechscopeError
from mechscope.vision.featvis import objectives as obj
from mechscope.vision.multimodal import facet_direction, faceted_objective
from mechscope.zoo.organisms.shapes_net import ShapesNet


@pytest.mark.parametrize("method", ["mean", "logistic"])
def test_probe_recovers_a_planted_facet(method):
    g = torch.Generator().manual_seed(0)
    facet = F.normalize(torch.randn(12, generator=g), dim=0)
    words = torch.randn(80, 12, 3, 3, generator=g) + 1.5 * facet.view(1, 12, 1, 1)
    pictures = torch.randn(80, 12, 3, 3, generator=g)
    found = facet_direction(words, pictures, method=method)
    assert found.shape == (12,) and float(found.norm()) == pytest.approx(1.0, abs=1e-6)
    assert float(found @ facet) > 0.9
    assert float(facet_direction(pictures, words, method=method) @ facet) < -0.9      # sign points toward acts_a


def test_null_facets_give_no_consistent_direction():
    g = torch.Generator().manual_seed(1)
    facet = F.normalize(torch.randn(12, generator=g), dim=0)
    cosines = [float(facet_direction(torch.randn(80, 12, generator=g), torch.randn(80, 12, generator=g)) @ facet)
               for _ in range(5)]
    assert max(abs(c) for c in cosines) < 0.7


def test_faceted_objective_is_the_sum_of_its_parts():
    torch.manual_seed(0)
    net = ShapesNet().eval()
    facet = F.normalize(torch.randn(208), dim=0)                     # mixed3b has 208 units
    o = faceted_objective("mixed4a:5", "mixed3b", facet, weight=0.7)
    assert set(o.layers) == {"mixed4a", "mixed3b"}
    with torch.no_grad():
        acts = capture(net, torch.rand(2, 3, 64, 64), list(o.layers))
    unit_part = acts["mixed4a"][:, 5].mean()
    facet_part = (acts["mixed3b"] * facet.view(1, -1, 1, 1)).sum(1).mean()
    assert float(o(acts)) == pytest.approx(float(unit_part + 0.7 * facet_part), rel=1e-5)
    parts = obj.channel("mixed4a", 5) + 0.7 * obj.direction("mixed3b", facet)
    assert float(o(acts)) == pytest.approx(float(parts(acts)), rel=1e-6)
    own = faceted_objective(obj.channel("mixed4a", 5), "mixed3b", facet, weight=0.0)   # an objective as the unit
    assert float(own(acts)) == pytest.approx(float(unit_part), rel=1e-6)


@pytest.mark.parametrize("call, message", [
    (lambda: facet_direction(torch.ones(4), torch.ones(4, 2)), r"\[N, U\]"),
    (lambda: facet_direction(torch.ones(4, 3), torch.ones(4, 2)), "same layer"),
    (lambda: facet_direction(torch.ones(4, 3), torch.zeros(4, 3), method="svm"), "valid: mean, logistic"),
    (lambda: facet_direction(torch.ones(4, 3), torch.ones(4, 3)), "do not differ"),
    (lambda: faceted_objective("mixed4a:5", "mixed3b", torch.ones(2, 3)), r"one direction \[U\]"),
    (lambda: faceted_objective("mixed4a", "mixed3b", torch.ones(3)), "names a whole layer"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(MechscopeError, match=message):
        call()
