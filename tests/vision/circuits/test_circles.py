import math
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from mechscope.errors import MechscopeError  # noqa: E402
from mechscope.vision.circuits import circles  # noqa: E402
from mechscope.vision.circuits.circle_units import (detector_orientations, find_circle_units,  # noqa: E402
                                                    layer_expanded_weights)
from mechscope.vision.circuits.handmade import curve_circuit  # noqa: E402
from mechscope.vision.circuits.weights import expanded_weights  # noqa: E402
from mechscope.zoo.registry import load  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _ring_tensor(n_det: int = 12, size: int = 9, radius: float = 3.0, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Detector ``d`` (orientation ``360 d / n``) weighted at the offset where a circle (or, ``flip``, the
    anti-circle) needs it: offset angle ``θ - 180°``, ``radius`` cells from the centre."""
    theta = torch.arange(n_det) * (360.0 / n_det)
    w = torch.zeros(n_det, size, size)
    c = (size - 1) / 2
    for d, t in enumerate(theta.tolist()):
        phi = math.radians(t if flip else t - 180.0)
        w[d, round(c - radius * math.sin(phi)), round(c + radius * math.cos(phi))] = 1.0
    return w, theta


def test_hand_built_ring_scores_high_and_beats_its_shuffled_null():
    w, theta = _ring_tensor()
    noisy = w + 0.005 * torch.rand(w.shape, generator=torch.Generator().manual_seed(1))
    test = circles.null_test(noisy[None], theta, draws=200, seed=0)
    assert float(test.scores[0]) > 0.7 and bool(test.significant[0])
    assert float(test.null[0].mean()) < 0.3
    d = circles.circle_details(w, theta)
    assert d.coverage == 8 and d.orientations == 8
    flipped, _ = _ring_tensor(flip=True)
    assert float(circles.circle_scores(flipped[None], theta)[0, 0]) < -0.8


def test_one_arc_scores_low_and_random_tensors_pass_at_the_chance_rate():
    w, theta = _ring_tensor()
    arc = w.clone()
    arc[3:] = 0                      # three detectors, one side of the circle: aligned where present
    assert float(circles.circle_scores(arc[None], theta)[0, 0]) < 0.5
    rand = torch.randn(300, 12, 9, 9, generator=torch.Generator().manual_seed(0))
    test = circles.null_test(rand, theta, draws=100, seed=0)
    assert int(test.significant.sum()) <= 9          # ~1 % expected (3 of 300); far from a ring's certainty
    assert float(test.scores.abs().max()) < 0.3


def test_bad_shapes_are_refused():
    with pytest.raises(MechscopeError):
        circles.circle_scores(torch.zeros(3, 4, 4), torch.zeros(3))
    with pytest.raises(MechscopeError):
        circles.circle_scores(torch.zeros(1, 3, 4, 4), torch.zeros(4))


def test_stimuli_are_full_circles_pieces_and_tangents():
    r = torch.tensor([0.2])
    ring = circles.rings(r, (16.0, 16.0), size=32)
    arc = circles.arcs(r, torch.tensor([0.0, 90.0]), 90.0, (16.0, 16.0), size=32)
    line = circles.tangents(r, torch.tensor([0.0]), 90.0, (16.0, 16.0), size=32)
    ink = lambda x: (1 - x[:, 0]).sum((1, 2))  # noqa: E731
    assert float(ink(arc)[0]) < 0.4 * float(ink(ring)[0])
    assert bool((ring[0, 0][arc[1, 0] < 0.5] < 0.6).all())   # an arc lies on its circle
    assert float(arc[0, 0, 16, 22]) < 0.5 and float(arc[1, 0, 9, 16]) < 0.5   # at 0° (right), 90° (up): y up
    assert float(line[0, 0, 16, 22]) < 0.5 and float(line[0, 0, 16, 10]) > 0.9


def test_layer_expanded_weights_match_expanded_weights_on_the_organism():
    net = load("shapes", device="cpu")
    w = layer_expanded_weights(net, "mixed3b", "mixed4a", 64, channels=[0, 100, 170], batch=2)
    for i, c in enumerate([0, 100, 170]):
        assert torch.allclose(w[i], expanded_weights(net, "mixed3b", f"mixed4a:{c}", 64, crop=False), atol=1e-5)


def _circle_net(radius: float = 7.0, n: int = 8, flip: bool = False) -> nn.Sequential:
    """Hand-made: ``n`` curve detectors (``curve_circuit``, orientation ``360 k / n``, curvature ``radius``)
    and one unit reading each at the offset a circle of ``radius`` about it needs (``flip``: the anti-circle)."""
    parts = [curve_circuit(orientation=360.0 * k / n, radius=radius) for k in range(n)]
    curves = nn.Conv2d(8, n, 21, padding=10)
    k = 2 * math.ceil(radius) + 3
    circle = nn.Conv2d(n, 1, k, padding=k // 2, bias=False)
    with torch.no_grad():
        curves.weight.copy_(torch.cat([p.curve_pre_relu.weight for p in parts]))
        curves.bias.zero_()
        circle.weight.zero_()
        c = k // 2
        for d in range(n):
            for s in torch.linspace(-0.5, 0.5, 7).tolist():   # a short arc of offsets per detector
                phi = math.radians(360.0 * (d + s) / n + (0.0 if flip else 180.0))
                circle.weight[0, d, round(c - radius * math.sin(phi)), round(c + radius * math.cos(phi))] = 1.0
    return nn.Sequential(OrderedDict([("lines_pre_relu", parts[0].lines_pre_relu), ("lines", nn.ReLU()),
                                      ("curves_pre_relu", curves), ("curves", nn.ReLU()),
                                      ("circle_pre_relu", circle), ("circle", nn.ReLU())])).eval()


def test_the_convention_on_a_hand_built_circle_unit(tmp_path):
    """Detectors' orientations from their radial tuning (``stimuli.curves``' convention), weights from the
    network: the circle wiring scores high, beats its null and prefers rings to arcs; the anti-circle scores low."""
    radii = (0.12, 0.15, 0.18)
    det = detector_orientations(_circle_net(), "curves", size=48, n_orientations=36)
    assert sorted(det.units) == list(range(8))
    for u, p in zip(det.units, det.preferred, strict=True):       # each detector prefers its wired orientation
        assert abs((p - 45.0 * u + 180.0) % 360.0 - 180.0) <= 10.0
    found = find_circle_units(_circle_net(), "circle", detectors_layer="curves", size=48, draws=100,
                              detectors=det, radii=radii)
    assert float(found.test.scores[0]) > 0.6 and found.significant() == [0]
    assert float(found.ratio[0]) > 1.0
    anti = find_circle_units(_circle_net(flip=True), "circle", detectors_layer="curves", size=48, draws=100,
                             detectors=det, radii=radii)
    assert float(anti.test.scores[0]) < -0.6 and anti.significant() == []
    # both sum curve detectors around the centre, so both answer a full ring more than one arc (ratio ~1.8):
    # the ratio alone cannot tell circle wiring from other wiring, hence the claim's control units; the ring
    # itself drives the circle unit twice as hard as the anti-circle
    assert float(found.responses["ring"][0].max()) > 1.5 * float(anti.responses["ring"][0].max())
    summary = found.save(tmp_path, top=2)
    assert summary["significant"] == 1 and summary["top"][0]["unit"] == "circle:0"
    assert (tmp_path / "circle_circles.json").exists() and (tmp_path / "circle_circles.png").exists()
