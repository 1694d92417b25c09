import pytest
import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.families.equivariance import (best_rotation, equivariance_matrix, families,
                                           partnered_rotation_score, rotation_partners, shift_scores,
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
