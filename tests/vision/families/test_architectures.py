"""Family comparison across architectures: censuses from tunings, tuning-curve matching, the untrained control."""

import pytest
import torch

import mechscope
from mechscope.errors import MechscopeError
from mechscope.vision.families.architectures import (compare_architectures, compare_tunings, family_census,
                                                     family_match)
from mechscope.vision.families.tuning import RadialTuning

pytestmark = pytest.mark.usefixtures("one_thread")
O = torch.arange(36, dtype=torch.float32) * 10.0


def _bump(peak_deg: float, width: float = 30.0) -> torch.Tensor:
    d = (O - peak_deg).remainder(360.0)
    d = torch.minimum(d, 360.0 - d)
    return torch.exp(-(d / width) ** 2)


def _tuning(curves: list[torch.Tensor], line_level: float = 0.2) -> RadialTuning:
    r = torch.stack(curves)
    lines = torch.full_like(r, line_level)
    n = r.shape[0]
    return RadialTuning("layer", list(range(n)), O, r, torch.zeros_like(r), lines, (0, 0))


def test_census_counts_one_sided_curve_units_and_their_coverage():
    t = _tuning([_bump(0), _bump(90), _bump(200), torch.ones(36)])      # the flat unit is no curve detector
    c = family_census(t)
    assert c["curve_detectors"] == 3 and c["units"] == 4 and c["curve_share"] == 0.75
    assert c["curve_coverage_of_8"] == 3 and c["curve_units"] == [0, 1, 2]


def test_match_finds_shifted_detectors_and_rejects_far_orientations():
    a = _tuning([_bump(0), _bump(90), _bump(180)])
    b = _tuning([_bump(95), _bump(5), torch.ones(36) * 0.5])           # twins of A's first two, not of the third
    m = family_match(a, b, min_corr=0.8, max_diff=22.5)
    assert m.units == [0, 1, 2] and m.best_match[:2] == [1, 0]
    assert m.matched == [True, True, False] and m.share == pytest.approx(2 / 3)
    assert m.match_is_curve_detector[:2] == [True, True]
    control = _tuning([_bump(270), torch.ones(36)])
    c = compare_tunings((a, None), (b, None), (control, None))
    assert c.match_control.share < c.match.share and c.gap == pytest.approx(c.match.share - c.match_control.share)
    assert set(c.to_json()) == {"a", "b", "control", "match", "match_control", "criteria"}
    with pytest.raises(MechscopeError, match="same orientations"):
        family_match(a, RadialTuning("l", [0], O[:10], torch.ones(1, 10), torch.ones(1, 10), torch.ones(1, 10),
                                     (0, 0)))


def test_a_network_matches_all_its_own_detectors_and_writes_json_and_png(tmp_path):
    a = mechscope.load("shapes-vgg", device="cpu")
    control = mechscope.load("shapes-vgg", weights="random", seed=0, device="cpu")
    c = compare_architectures(a, "conv3_2", a, "conv3_2", control, n_orientations=36, high_low=False)
    assert c.a["curve_detectors"] > 0 and c.match.share == 1.0
    assert all(r == pytest.approx(1.0, abs=1e-4) for r in c.match.best_corr)
    assert c.control["units"] == 96 and 0.0 <= c.match_control.share < 1.0          # the control is computed
    written = c.save(tmp_path, ("shapes-vgg", "shapes-vgg"))
    assert [p.name for p in written] == ["shapes-vgg_conv3_2_vs_shapes-vgg_conv3_2.json",
                                         "shapes-vgg_conv3_2_vs_shapes-vgg_conv3_2.png"]
    assert written[1].read_bytes()[:4] == b"\x89PNG"
