import pytest
import torch

from mechscope.vision.circuits.handmade import curve_circuit
from mechscope.vision.families.tuning import radial_tuning_curve


@pytest.mark.parametrize("orientation", [0.0, 45.0, 200.0, 300.0])
def test_the_hand_written_detector_prefers_its_designed_orientation_and_curves(orientation):
    net = curve_circuit(orientation=orientation, radius=8.0)
    tc = radial_tuning_curve(net, "curve", n_orientations=36, radii=(0.12, 0.18, 0.27), size=48, position="centre",
                             progress=False)
    error = abs((float(tc.preferred[0]) - orientation + 180) % 360 - 180)
    assert error <= 10.0
    assert float(tc.curve_preference[0]) > 1.5 and float(tc.width[0]) < 90


def test_wiring_follows_the_arc():
    net = curve_circuit(orientation=0.0, radius=6.0, n_lines=4, curve_kernel=15)
    w = net.curve_pre_relu.weight[0].detach()            # [lines, 15, 15]
    assert float(w.clamp_min(0).sum()) > 0 and float(w.clamp_max(0).sum()) < 0
    # at the unit's centre the arc is vertical (normal 0 deg): line detector 0 is excited there
    assert float(w[0, 7, 7]) == 1.0
    # every excited offset lies on the circle of radius 6 around (7 + 6, 7)
    rows, cols = torch.nonzero(w.clamp_min(0).sum(0), as_tuple=True)
    dist = torch.hypot(cols.float() - 13, rows.float() - 7)
    assert float((dist - 6).abs().max()) <= 0.75
