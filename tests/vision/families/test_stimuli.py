import torch

from mechscope.vision.families.stimuli import FAMILIES, curves, lines


def test_rotating_the_image_rotates_the_orientation():
    a = curves(torch.tensor([30.0]), 0.2, size=32)
    b = curves(torch.tensor([120.0]), 0.2, size=32)
    # +90 deg counter-clockwise on screen is rot90 with dims (x=col, y=row) -> k=1 over (H, W)
    torch.testing.assert_close(torch.rot90(a, 1, dims=(2, 3)), b, atol=2e-4, rtol=0)


def test_lines_are_half_turn_symmetric_and_limits_of_curves():
    torch.testing.assert_close(lines(torch.tensor([20.0]), size=32), lines(torch.tensor([200.0]), size=32),
                               atol=1e-5, rtol=0)
    flat = curves(torch.tensor([0.0]), 50.0, size=32)
    assert float((flat - lines(torch.tensor([0.0]), size=32)).abs().max()) < 0.05


def test_black_on_white_with_anti_aliased_edges_and_options():
    x = curves(torch.tensor([0.0, 45.0]), torch.tensor([0.1, 0.3]), size=48)
    assert x.shape == (2, 3, 48, 48) and float(x.max()) == 1.0 and float(x.min()) == 0.0
    grey = x[0, 0][(x[0, 0] > 0) & (x[0, 0] < 1)]
    assert grey.numel() > 0                                           # partially covered pixels
    inv = curves(torch.tensor([0.0]), 0.1, size=48, background=0.0, colour=1.0)
    torch.testing.assert_close(inv, 1 - x[:1])
    assert set(FAMILIES) >= {"curves", "lines"} and FAMILIES["curves"].grid["radius"]


def test_angles_gratings_high_low_and_centre_surround():
    from mechscope.vision.families.stimuli import angles, centre_surround, gratings, high_low

    a = angles(torch.tensor([0.0, 90.0]), 90.0, size=32)
    torch.testing.assert_close(torch.rot90(a[:1], 1, dims=(2, 3)), a[1:], atol=2e-4, rtol=0)
    g = gratings(torch.tensor([0.0]), 4.0, size=64)
    assert abs(float(g.mean()) - 0.5) < 0.01 and float(g.max()) > 0.99
    # a 0-degree grating varies along x only: columns constant down the rows
    assert float((g[0, 0] - g[0, 0, :1]).abs().max()) < 1e-5
    hl = high_low(torch.tensor([0.0]), 8.0, size=64)[0, 0]
    # high side (right, +x) changes much more from column to column than the low side
    right, left = hl[:, 36:].diff(dim=1).abs().mean(), hl[:, :28].diff(dim=1).abs().mean()
    assert float(right) > 4 * float(left)
    cs = centre_surround(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]]), size=32)
    assert cs[0, :, 16, 16].tolist() == [1.0, 0.0, 0.0] and cs[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0]
    assert set(FAMILIES) >= {"angles", "gratings", "high_low"}


def test_painted_curves_outline_matches_curves_and_fill_bounds_a_region_by_the_arc():
    import pytest

    from mechscope.errors import MechscopeError
    from mechscope.vision.families.stimuli import painted_curves

    o = torch.tensor([0.0, 90.0])
    torch.testing.assert_close(painted_curves(o, 0.2, size=32), curves(o, 0.2, size=32))
    red = painted_curves(o, 0.2, size=32, colour=(1.0, 0.0, 0.0), background=(0.0, 0.0, 1.0), width=0.1)
    assert red[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0]                   # background
    on = red[0, :, 14:18, 14:18].flatten(1)[:, red[0, 0, 14:18, 14:18].flatten().argmax()]
    assert on.tolist() == [1.0, 0.0, 0.0]                               # the arc passes through the centre
    filled = painted_curves(o, 0.2, size=32, filled=True)
    stroke = painted_curves(o, 0.2, size=32)
    assert float((filled < 0.5).sum()) > 1.5 * float((stroke < 0.5).sum())  # a region, not a line
    # orientation 0: the centre of curvature lies to the right (+x), so the region lies right of the centre
    assert float(filled[0, 0, 16, 18]) < 0.1 and float(filled[0, 0, 16, 12]) > 0.9
    # the filled segment turns with the orientation, like the outline
    torch.testing.assert_close(torch.rot90(filled[:1], 1, dims=(2, 3)), filled[1:], atol=2e-4, rtol=0)
    with pytest.raises(MechscopeError, match="RGB"):
        painted_curves(o, 0.2, size=32, colour=(2.0, 0.0, 0.0))
    with pytest.raises(MechscopeError, match="one per curve"):
        painted_curves(o, 0.2, size=32, colour=torch.zeros(3, 3))
