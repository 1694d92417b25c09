import pytest
import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.families.equivariance import (best_rotation, equivariance_matrix, families,
                                           orientation_weight_profile, partnered_rotation_score,
                                           rotation_grid_error, rotation_partners, rotation_safe_size,
                                           shift_scores,
                                           tuning_shift_score, weight_equivariance_matrix,
                                           weight_rotation_score)
from mechscope.vision.families.tuning import RadialTuning, rotate_images


def _quarter_family(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(3, 5, 5, generator=g, dtype=torch.float64)
    rand = torch.randn(3, 5, 5, generator=g, dtype=torch.float64)
    rots = [rotate_images(base[None], 90.0 * k, fill=0.0)[0] for k in range(4)]
    return torch.stack(rots + [rand])  # [5, 3, 5, 5]: four quarter turns + one random kernel


def test_quarter_turns_score_one_at_their_angle():
    w = _quarter_family()
    for k in range(4):
        assert weight_rotation_score(w[0], w[k], 90.0 * k) == pytest.approx(1.0, abs=1e-12)
        assert best_rotation(w[0], w[k]) == (90.0 * k, pytest.approx(1.0, abs=1e-12))
    # a wrong angle is not a match
    assert weight_rotation_score(w[0], w[1], 0.0) < 0.9


def test_rotation_agrees_with_rotate_images_at_other_angles():
    w = _quarter_family()[0]
    rotated = rotate_images(w[None], 30.0, fill=0.0)[0]
    assert weight_rotation_score(w, rotated, 30.0) == pytest.approx(1.0, abs=1e-6)


def test_four_rotated_kernels_form_one_family_and_a_random_one_does_not():
    score, angle = weight_equivariance_matrix(_quarter_family())
    assert torch.allclose(score[:4, :4], torch.ones(4, 4, dtype=torch.float64), atol=1e-12)
    assert angle[0, :4].tolist() == [0.0, 90.0, 180.0, 270.0]
    assert angle[1, 0] == 270.0
    assert score[:4, 4].abs().max() < 0.8 and score[4, :4].abs().max() < 0.8
    assert families(score, 0.95) == [[0, 1, 2, 3], [4]]
    assert families(score, 0.95, channels=[10, 11, 12, 13, 14]) == [[10, 11, 12, 13], [14]]


def _bump(n: int, centre: int, width: float = 3.0) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64)
    d = torch.remainder(i - centre + n / 2, n) - n / 2
    return torch.exp(-(d / width) ** 2)


def test_circular_shift_scores_one_with_the_right_shift():
    a = _bump(72, 10) + 0.3 * _bump(72, 40, 6.0)
    for steps in (0, 1, 9, 36, 71):
        score, shift = tuning_shift_score(a, a.roll(steps))
        assert score == pytest.approx(1.0, abs=1e-12)
        assert shift == pytest.approx(steps * 5.0)
    # matches a brute-force loop over shifts
    b = _bump(72, 30, 5.0)
    s = shift_scores(a, b)[0, 0]
    brute = torch.stack([torch.corrcoef(torch.stack([a.roll(k), b]))[0, 1] for k in range(72)])
    assert torch.allclose(s, brute, atol=1e-12)


def test_flat_curve_scores_zero():
    assert tuning_shift_score(torch.ones(8), _bump(8, 2)) == (0.0, 0.0)


def test_equivariance_matrix_on_radial_tuning():
    n = 36
    base = _bump(n, 3)
    curves = torch.stack([base.roll(9 * k) for k in range(4)] + [_bump(n, 5, 1.0) + _bump(n, 20, 1.0)])
    tuning = RadialTuning("layer", [3, 5, 7, 9, 11], torch.arange(n) * 10.0, curves.float(),
                          torch.zeros(5, n), torch.zeros(5, n), (0, 0))
    m = equivariance_matrix(tuning)
    assert m.channels == [3, 5, 7, 9, 11]
    assert torch.allclose(m.score[:4, :4], torch.ones(4, 4, dtype=torch.float64), atol=1e-6)
    assert m.shift[0, 1] == 90.0 and m.shift[1, 0] == 270.0 and m.shift[0, 3] == 270.0
    assert m.score[4, :4].max() < 0.8
    assert m.families(0.95) == [[3, 5, 7, 9], [11]]
    sub = equivariance_matrix(tuning, channels=[9, 3], chunk=1)
    assert sub.channels == [9, 3] and sub.shift[1, 0] == 270.0
    with pytest.raises(MechscopeError, match=r"channels \[4\] are not in the tuning curves"):
        equivariance_matrix(tuning, channels=[4])


def test_errors_are_clear():
    with pytest.raises(MechscopeError, match="same shape"):
        weight_rotation_score(torch.zeros(3, 5, 5), torch.zeros(3, 3, 3), 90)
    with pytest.raises(MechscopeError, match=r"\[C_out, C_in, kh, kw\]"):
        weight_equivariance_matrix(torch.zeros(3, 5, 5))
    with pytest.raises(MechscopeError, match="same number of orientations"):
        tuning_shift_score(torch.zeros(8), torch.zeros(9))
    with pytest.raises(MechscopeError, match="square"):
        families(torch.zeros(2, 3), 0.5)


def _rotated_family(kernel: torch.Tensor) -> torch.Tensor:
    """Four kernels, each the previous one turned a quarter turn counter-clockwise: ``[4, C_in, k, k]``."""
    return torch.stack([torch.rot90(kernel, k, (-2, -1)) for k in range(4)])


def test_rotation_partners_of_an_equivariant_layer_are_the_next_rotated_copy():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(_rotated_family(torch.randn(3, 3, 3)))
    images = torch.rand(6, 3, 12, 12)
    for q in (1, 2, 3):
        p = rotation_partners(net, "1", images, q)
        assert p.partner.tolist() == [(k + q) % 4 for k in range(4)]
        assert torch.allclose(p.corr, torch.ones(4), atol=1e-5)
        assert p.matched(0.99).tolist() == [0, 1, 2, 3]


def test_partnered_rotation_score_is_one_for_rotated_weights_over_rotated_inputs():
    torch.manual_seed(1)
    w_a = torch.randn(4, 3, 3)
    partners = torch.tensor([1, 2, 3, 0])          # input channel c turns into c + 1
    w_b = torch.empty_like(w_a)
    w_b[partners] = torch.rot90(w_a, 1, (-2, -1))   # b reads a's pattern, turned, from the turned inputs
    assert partnered_rotation_score(w_a, w_b, 1, partners) == pytest.approx(1.0)
    assert partnered_rotation_score(w_a, w_b, 1, partners, channels=torch.tensor([0, 2])) == pytest.approx(1.0)
    assert partnered_rotation_score(w_a, w_b, 1, torch.arange(4)) < 0.9   # ignoring how inputs turn fails
    with pytest.raises(MechscopeError, match="one channel per input channel"):
        partnered_rotation_score(w_a, w_b, 1, torch.arange(3))


def test_rotation_partners_needs_square_images():
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1))
    with pytest.raises(MechscopeError, match="square"):
        rotation_partners(net, "0", torch.rand(2, 3, 8, 10), 1)


def _strided_equivariant_net() -> nn.Sequential:
    """A stem like ShapesNet's (5x5 stride-2 SAME conv, ReLU, 3x3 stride-2 SAME max-pool) with four first-layer
    kernels that are quarter turns of one another, then a 3x3 conv whose four kernels are quarter turns of one
    another read through that action: unit ``k`` reads channel ``(c + k) % 4`` with ``rot90^k`` of unit 0's
    kernel for channel ``c``.  Turning the input a quarter turn turns every channel ``k`` into ``k + 1``, exactly."""
    from mechscope.zoo.inceptionv1 import ConvReLU, SameConv2d, SameMaxPool2d

    torch.manual_seed(3)
    net = nn.Sequential(ConvReLU(3, 4, 5, stride=2), SameMaxPool2d(3, 2), SameConv2d(4, 4, 3))
    base = torch.randn(4, 3, 3)
    w2 = torch.empty(4, 4, 3, 3)
    for k in range(4):
        for c in range(4):
            w2[k, (c + k) % 4] = torch.rot90(base[c], k, (-2, -1))
    with torch.no_grad():
        net[0].conv.weight.copy_(_rotated_family(torch.randn(3, 5, 5)))
        net[0].conv.bias.fill_(-0.1)
        net[2].weight.copy_(w2)
        net[2].bias.zero_()
    return net.eval()


def test_rotation_grid_sizes_of_a_strided_stem():
    net = _strided_equivariant_net()
    # two stride-2 SAME layers: the grid is centred only at sizes 4k + 1
    errors = {s: rotation_grid_error(net, "2", s) for s in range(28, 38)}
    assert [s for s, e in errors.items() if e < 1e-6] == [29, 33, 37]
    assert min(e for s, e in errors.items() if s not in (29, 33, 37)) > 0.05
    assert rotation_safe_size(net, "2", 30) == 33 and rotation_safe_size(net, "0", 32) == 33
    with pytest.raises(MechscopeError, match="no input size"):
        rotation_safe_size(net, "2", 30, search=1)


def test_positive_control_strided_rotated_copies_give_partners_and_weights_of_one():
    net = _strided_equivariant_net()
    images = torch.rand(8, 3, 32, 32)
    w2 = net[2].weight.detach()
    for q in (1, 2, 3):
        fixed = rotation_partners(net, "0", images, q)           # padded to 33 px
        assert fixed.size == 33
        assert fixed.partner.tolist() == [(k + q) % 4 for k in range(4)]
        assert torch.allclose(fixed.corr, torch.ones(4), atol=1e-5)
        top = rotation_partners(net, "2", images, q)
        assert top.partner.tolist() == [(k + q) % 4 for k in range(4)]
        assert torch.allclose(top.corr, torch.ones(4), atol=1e-5)
        for k in range(4):
            score = partnered_rotation_score(w2[k], w2[(k + q) % 4], q, fixed.partner)
            assert score == pytest.approx(1.0, abs=1e-6)
        # the old way: the 32-px grid is offset by a fraction of a cell, so the turned maps do not line up
        old = rotation_partners(net, "2", images, q, pad=False)
        assert old.size == 32 and float(old.corr.max()) < 0.5   # measured: 0.03-0.36 on noise images


def test_orientation_weight_profile_bins_by_circular_difference():
    pref = torch.tensor([0.0, 90.0, 180.0, 270.0, 350.0])
    diff = ((pref[:, None] - pref[None, :] + 180) % 360 - 180).abs()
    w = torch.cos(torch.deg2rad(diff))                               # excite neighbours, inhibit opposites
    centres, mean, count = orientation_weight_profile(w, pref, pref, bins=4)
    assert centres.tolist() == [22.5, 67.5, 112.5, 157.5]
    assert count.tolist() == [7, 2, 10, 6] and mean[0] > 0 > mean[3]
    w[0, 0] = float("nan")
    assert orientation_weight_profile(w, pref, pref, bins=4)[2][0] == 6
    with pytest.raises(MechscopeError, match=r"\[B, A\]"):
        orientation_weight_profile(w[:2], pref, pref)
