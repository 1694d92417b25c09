import pytest
import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.families.stimuli import curves, lines
from mechscope.vision.families.tuning import (curve_detector_census, curve_detectors, orientation_coverage,
                                     radial_tuning_curve)


def _template_net(size=32):
    """Channel 0 = overlap with a curve opening at 90 deg, channel 1 = with a line of normal 0 deg."""
    net = nn.Sequential(nn.Conv2d(3, 2, size, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight[0] = 1 - curves(torch.tensor([90.0]), 0.18, size=size)[0]
        net[0].weight[1] = 1 - lines(torch.tensor([0.0]), size=size)[0]
    return net.eval()


def test_a_curve_template_is_a_curve_detector_of_its_orientation():
    tc = radial_tuning_curve(_template_net(), "1", n_orientations=72, size=32,
                             background=0.0, colour=1.0, progress=False)
    assert tc.responses.shape == (2, 72) and tc.position == (0, 0)
    assert float(tc.preferred[0]) == pytest.approx(90.0, abs=5.0)
    assert float(tc.curve_preference[0]) > 1.3 and float(tc.curve_preference[1]) < 1.0
    assert float(tc.width[0]) < 180 and float(tc.selectivity()[0]) > float(tc.selectivity()[1])
    found = curve_detectors(tc, min_preference=1.3, max_opposite=0.6)   # a template overlaps its mirror image
    assert found.units == [0] and found.coverage(8) == 1


def test_unit_names_positions_and_errors():
    net = nn.Sequential(nn.Conv2d(3, 4, 5, padding=2), nn.ReLU())
    tc = radial_tuning_curve(net, "1:2", n_orientations=8, radii=(0.2,), size=16, position="centre",
                             progress=False)
    assert tc.channels == [2] and tc.position == (8, 8)
    with pytest.raises(MechscopeError, match="outside"):
        radial_tuning_curve(net, "1", n_orientations=4, radii=(0.2,), size=16, position=(20, 0), progress=False)
    with pytest.raises(MechscopeError, match="position must be"):
        radial_tuning_curve(net, "1", n_orientations=4, radii=(0.2,), size=16, position="middle",
                            progress=False)
    with pytest.raises(KeyError):
        radial_tuning_curve(net, "nope", n_orientations=4, size=16, progress=False)


def test_coverage_and_census():
    assert orientation_coverage([0, 10, 100, 359], 8) == 3
    census = curve_detector_census(_template_net(), ["1"], size=32, n_orientations=36, min_preference=1.3,
                                   max_opposite=0.6,
                                   stimulus={"background": 0.0, "colour": 1.0})
    assert census["1"]["units"] == 2 and census["1"]["detectors"][0]["unit"] == "1:0"


def test_a_line_template_is_two_sided_and_not_a_curve_detector():
    tc = radial_tuning_curve(_template_net(), "1", n_orientations=72, size=32,
                             background=0.0, colour=1.0, progress=False)
    assert float(tc.opposite[0]) < 0.5 < float(tc.opposite[1])
    assert 1 not in curve_detectors(tc, min_preference=0.0).units


def test_orientation_by_curvature_map():
    import matplotlib

    matplotlib.use("Agg")
    tc = radial_tuning_curve(_template_net(), "1", n_orientations=36, radii=(0.1, 0.18, 0.3), size=32,
                             background=0.0, colour=1.0, progress=False)
    assert tc.by_radius.shape == (2, 3, 36) and tc.radii == (0.1, 0.18, 0.3)
    torch.testing.assert_close(tc.by_radius.max(1).values, tc.responses)
    # the template was drawn at radius 0.18: that row holds channel 0's peak
    assert int(tc.by_radius[0].max(1).values.argmax()) == 1
    ax = tc.plot_curvature(0)
    assert len(ax.get_yticklabels()) == 4


def test_rotate_images_quarter_turns_are_exact_and_counter_clockwise():
    from mechscope.vision.families.tuning import rotate_images

    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(rotate_images(x, 90.0), torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate_images(x, 360.0), x, atol=1e-5, rtol=0)
    corner = rotate_images(torch.zeros(1, 1, 16, 16), 45.0, fill=0.5)
    assert float(corner[0, 0, 0, 0]) == pytest.approx(0.5) and float(corner[0, 0, 8, 8]) == 0.0


def test_rotated_examples_reveal_a_rotation_family():
    """Four channels whose kernels are quarter turns of one curve template: rotating the images by 90 deg moves
    the response from channel k to channel k + 1."""
    from mechscope.vision.families.tuning import rotated_tuning

    base = 1 - curves(torch.tensor([90.0]), 0.18, size=32)[0]
    net = nn.Sequential(nn.Conv2d(3, 4, 32, bias=False), nn.ReLU()).eval()
    with torch.no_grad():
        for k in range(4):
            net[0].weight[k] = torch.rot90(base, k, dims=(1, 2))
    images = 1 - curves(torch.tensor([90.0, 95.0]), 0.18, size=32)      # white curves on black
    rt = rotated_tuning(net, "1", images, angles=[0.0, 90.0, 180.0, 270.0], progress=False)
    assert rt.responses.shape == (4, 4) and rt.position == (0, 0)
    peaks = rt.responses.argmax(1).tolist()         # channel k peaks at rotation 90 k
    assert peaks == [0, 1, 2, 3]
    torch.testing.assert_close(rt.responses[1, 1], rt.responses[0, 0], rtol=1e-4, atol=1e-4)


def test_centred_top_examples_rank_images_by_the_centre_unit_across_batches():
    from mechscope.vision.families.tuning import centred_top_examples

    net = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False)).eval()
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0] = 1.0                    # brightness
        net[0].weight[1] = -1.0                   # darkness
    levels = torch.tensor([0.3, 0.9, 0.1, 0.6, 0.5, 0.2])
    images = levels[:, None, None, None].expand(-1, 3, 8, 8).clone()
    images[0, :, 4, 4] = 1.0                      # brightest at the centre only: ranks first for channel 0
    batches = [(list(range(3)), images[:3]), (list(range(3, 6)), images[3:])]
    top = centred_top_examples(net, "0", [0, 1], batches, k=3, progress=False)
    assert top[0][:, 0, 0, 0].tolist() == pytest.approx([0.3, 0.9, 0.6])
    assert top[1][:, 0, 4, 4].tolist() == pytest.approx([0.1, 0.2, 0.5])
    with pytest.raises(MechscopeError, match="out of range"):
        centred_top_examples(net, "0", [5], batches, progress=False)


def test_sharpest_picks_the_narrowest_detector_of_each_sector():
    from mechscope.vision.families.tuning import CurveDetectors

    found = CurveDetectors("l", units=[3, 5, 7, 9], preferred=[10.0, 30.0, 100.0, 350.0],
                           curve_preference=[2.0] * 4, width=[60.0, 40.0, 50.0, 20.0], criteria={})
    assert found.sharpest(8) == [5, 7, 9]     # sector 0: 5 beats 3; sector 2: 7; sector 7: 9
    assert found.sharpest(1) == [9]
