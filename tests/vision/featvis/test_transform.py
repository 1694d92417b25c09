"""Transformation robustness: pad, jitter, random scale and rotation, Lucid's standard list."""

import math

import pytest
import torch

from mechscope.vision.featvis import transform as T


def _find_window(big: torch.Tensor, small: torch.Tensor) -> list[tuple[int, int]]:
    """All (dy, dx) where ``small`` equals the same-sized window of ``big`` (last two dims)."""
    h, w = small.shape[-2:]
    hits = []
    for dy in range(big.shape[-2] - h + 1):
        for dx in range(big.shape[-1] - w + 1):
            if torch.equal(big[..., dy : dy + h, dx : dx + w], small):
                hits.append((dy, dx))
    return hits


# --- pad -----------------------------------------------------------------------------------------------------


def test_pad_12_adds_24_pixels_of_grey():
    x = torch.rand(2, 3, 20, 30)
    y = T.pad(12)(x)
    assert y.shape == (2, 3, 44, 54)
    assert torch.equal(y[..., 12:-12, 12:-12], x)
    border = torch.ones(44, 54, dtype=torch.bool)
    border[12:-12, 12:-12] = False
    assert torch.all(y[..., border] == 0.5)


def test_pad_other_modes():
    x = torch.rand(1, 3, 6, 6)
    rep = T.pad(2, mode="replicate")(x)
    assert rep.shape == (1, 3, 10, 10)
    assert torch.equal(rep[..., 0, 2:-2], x[..., 0, :])  # top border copies the first row
    assert torch.equal(rep[..., 0, 0], x[..., 0, 0])  # corner copies the corner
    refl = T.pad(1, mode="reflect")(x)
    assert torch.equal(refl[..., 0, 1:-1], x[..., 1, :])
    assert torch.equal(T.pad(3, value=0.0)(x)[..., :3, :], torch.zeros(1, 3, 3, 12))


# --- jitter --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 4, 8])
def test_jitter_shrinks_by_d_and_crops_a_window(d):
    torch.manual_seed(d)
    x = torch.rand(1, 3, 24, 30)  # random content: a window matches at exactly one offset
    offsets = set()
    for _ in range(40):
        y = T.jitter(d)(x)
        assert y.shape == (1, 3, 24 - d, 30 - d)
        hits = _find_window(x, y)
        assert len(hits) == 1
        dy, dx = hits[0]
        assert 0 <= dy <= d and 0 <= dx <= d
        offsets.add(hits[0])
    assert len(offsets) > 1  # it is random


def test_jitter_reaches_both_extreme_offsets():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 6, 6)
    seen = {_find_window(x, T.jitter(1)(x))[0] for _ in range(100)}
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_jitter_rejects_d_below_one():
    with pytest.raises(ValueError):
        T.jitter(0)


# --- random_scale --------------------------------------------------------------------------------------------


def test_random_scale_picks_from_list():
    torch.manual_seed(0)
    scales = (0.5, 1.0, 1.5)
    sizes = set()
    for _ in range(40):
        y = T.random_scale(scales)(torch.rand(1, 3, 20, 30))
        assert y.shape[:2] == (1, 3)
        assert tuple(y.shape[-2:]) in {(round(20 * s), round(30 * s)) for s in scales}
        sizes.add(tuple(y.shape[-2:]))
    assert sizes == {(10, 15), (20, 30), (30, 45)}


def test_random_scale_bilinear_keeps_constant_image():
    x = torch.full((1, 3, 16, 16), 0.3)
    y = T.random_scale([1.25])(x)
    assert y.shape == (1, 3, 20, 20)
    assert torch.allclose(y, torch.full_like(y, 0.3))


def test_random_scale_one_is_identity():
    x = torch.rand(1, 3, 9, 11)
    assert torch.allclose(T.random_scale([1.0])(x), x)


# --- random_rotate -------------------------------------------------------------------------------------------


def test_random_rotate_zero_is_identity():
    x = torch.rand(2, 3, 15, 15)
    assert torch.equal(T.random_rotate([0])(x), x)
    assert torch.equal(T.random_rotate([0.0], units="radians")(x), x)


def _dot(size=31, r=2):
    x = torch.zeros(1, 1, size, size)
    c = size // 2
    x[..., c - r : c + r + 1, c - r : c + r + 1] = 1.0
    return x


def test_random_rotate_90_degrees_keeps_centred_dot_and_shape():
    x = _dot()
    y = T.random_rotate([90])(x)
    assert y.shape == x.shape
    ys, xs = torch.nonzero(y[0, 0] > 0.5, as_tuple=True)
    assert len(ys) > 0
    c = x.shape[-1] // 2
    assert abs(ys.float().mean().item() - c) <= 1 and abs(xs.float().mean().item() - c) <= 1


def test_random_rotate_90_degrees_moves_off_centre_content():
    """An off-centre bar turns by (about) a quarter turn: a horizontal bar becomes a vertical one."""
    x = torch.zeros(1, 1, 33, 33)
    x[..., 16, 20:30] = 1.0  # horizontal bar to the right of the centre (16, 16)
    y = T.random_rotate([90])(x)
    ys, xs = torch.nonzero(y[0, 0] > 0.5, as_tuple=True)
    assert len(ys) >= 8
    assert ys.max() - ys.min() >= 7  # now vertical ...
    assert xs.max() - xs.min() <= 1
    assert abs(xs.float().mean().item() - 16) <= 1  # ... in the centre column
    assert abs(ys.float().mean().item() - 16) >= 5  # ... above or below the centre
    assert torch.equal(y[..., 16, 20:30], torch.zeros(1, 1, 10))  # and gone from where it was


def test_random_rotate_uses_lucid_3_14_for_degrees():
    """Lucid converts degrees with pi = 3.14: 18000 'degrees' is 314 rad (not 50 full turns), i.e. about -9 degrees."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 41, 41)
    y = T.random_rotate([18000])(x)
    assert torch.equal(y, T.random_rotate([314.0], units="radians")(x))
    assert torch.equal(y, T.random_rotate([314.0 - 100 * math.pi], units="radians")(x))
    assert not torch.equal(y, x)  # with the true pi this would be the identity
    assert torch.equal(T.random_rotate([90])(x), T.random_rotate([90 * 3.14 / 180], units="radians")(x))


def test_random_rotate_nearest_neighbour_zeros_outside():
    x = torch.full((1, 3, 21, 21), 0.7)
    y = T.random_rotate([45])(x)
    values = torch.unique(y)
    assert len(values) == 2  # nearest neighbour: no blending
    assert values[0] == 0 and values[1] == pytest.approx(0.7)
    assert y[0, 0, 0, 0] == 0  # corners come from outside the image
    assert torch.allclose(y[..., 10, 10], torch.tensor(0.7))


def test_random_rotate_rejects_unknown_units():
    with pytest.raises(KeyError):
        T.random_rotate([1], units="gradians")


def test_random_rotate_is_rigid_on_non_square_images():
    x = torch.zeros(1, 1, 32, 64)
    x[..., 16, 24:40] = 1.0  # 16-px horizontal bar through the centre
    y = T.random_rotate([math.pi / 2], units="radians")(x)
    ys, _ = torch.nonzero(y[0, 0] > 0.5, as_tuple=True)
    assert len(ys) > 0
    assert ys.max() - ys.min() + 1 >= 14  # about 16 px tall


# --- compose and standard transforms ------------------------------------------------------------------------


def test_compose_applies_left_to_right():
    x = torch.rand(1, 3, 10, 10)
    y = T.compose([T.pad(2), T.pad(1, value=0.0)])(x)
    assert y.shape == (1, 3, 16, 16)
    assert torch.all(y[..., 0, :] == 0.0)  # the last pad is outermost
    assert torch.all(y[..., 1, 1:-1] == 0.5)
    assert torch.equal(T.compose([])(x), x)


def test_standard_transforms_data_is_lucids():
    (f_pad, a_pad), (f_j1, a_j1), (f_scale, scales), (f_rot, angles), (f_j2, a_j2) = T.STANDARD_TRANSFORMS
    assert (f_pad, a_pad) == (T.pad, 12)
    assert (f_j1, a_j1) == (T.jitter, 8)
    assert (f_j2, a_j2) == (T.jitter, 4)
    assert f_scale is T.random_scale and f_rot is T.random_rotate
    assert len(scales) == 11
    assert scales == pytest.approx([0.90 + 0.02 * i for i in range(11)])
    assert len(angles) == 26
    assert sorted(set(angles)) == list(range(-10, 11))
    assert list(angles).count(0) == 6  # the 0 of -10..10 plus five extra


def test_standard_transforms_fresh_list_of_five():
    a, b = T.standard_transforms(), T.standard_transforms()
    assert len(a) == 5 and all(callable(t) for t in a)
    assert a[0] is not b[0]


def test_standard_transforms_output_size_bounds():
    torch.manual_seed(0)
    lo = math.floor((128 + 24 - 8) * 0.9) - 4
    hi = math.ceil((128 + 24 - 8) * 1.1) - 4
    t = T.compose(T.standard_transforms())
    sizes = set()
    for _ in range(30):
        y = t(torch.rand(1, 3, 128, 128))
        assert y.shape[:2] == (1, 3)
        assert y.shape[-2] == y.shape[-1]  # square in, square out
        assert lo <= y.shape[-1] <= hi
        sizes.add(y.shape[-1])
    assert len(sizes) > 1


def test_standard_transforms_differentiable():
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    T.compose(T.standard_transforms())(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# --- collapse_alpha_random -------------------------------------------------------------------------------------


def _rgba(rgb: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.cat([rgb, torch.full_like(rgb[:, :1], alpha)], dim=1)


def test_collapse_alpha_opaque_is_rgb_and_transparent_is_background():
    rgb = torch.rand(2, 3, 16, 24)
    collapse = T.collapse_alpha_random()
    opaque = collapse(_rgba(rgb, 1.0))
    assert opaque.shape == (2, 3, 16, 24)
    assert torch.equal(opaque, rgb)
    other_rgb = torch.rand(2, 3, 16, 24)
    torch.manual_seed(0)
    bg = collapse(_rgba(rgb, 0.0))
    torch.manual_seed(0)
    bg_other_rgb = collapse(_rgba(other_rgb, 0.0))
    assert torch.equal(bg, bg_other_rgb)  # fully transparent: the rgb does not matter
    assert bg.shape == (2, 3, 16, 24) and bg.min() > 0 and bg.max() < 1
    assert bg.std() > 0.05  # a real image, not a constant
    assert not torch.allclose(bg[0], bg[1])  # each batch element its own background
    assert not torch.allclose(bg, collapse(_rgba(rgb, 0.0)))  # fresh on every call


def test_collapse_alpha_is_the_over_composite():
    rgb = torch.rand(1, 3, 20, 20)
    a = torch.rand(1, 1, 20, 20)
    collapse = T.collapse_alpha_random(sd=0.5)
    torch.manual_seed(1)
    bg = collapse(_rgba(rgb, 0.0))
    torch.manual_seed(1)
    out = collapse(torch.cat([rgb, a], dim=1))
    assert torch.allclose(out, a * rgb + (1 - a) * bg, atol=1e-6)


def test_collapse_alpha_background_is_smooth_and_sd_controls_contrast():
    torch.manual_seed(2)
    x = _rgba(torch.zeros(4, 3, 64, 64), 0.0)
    bg = T.collapse_alpha_random(sd=0.5)(x)
    # 1/f noise: neighbouring pixels are strongly correlated, unlike white noise
    d = bg - bg.mean(dim=(-2, -1), keepdim=True)
    corr = (d[..., :, 1:] * d[..., :, :-1]).mean() / d.pow(2).mean()
    assert corr > 0.5
    assert bg.mean().item() == pytest.approx(0.5, abs=0.1)
    faint = T.collapse_alpha_random(sd=0.01)(x)
    assert faint.std() < 0.2 * bg.std()


def test_collapse_alpha_gradients_and_shape_check():
    x = torch.rand(2, 4, 8, 8, requires_grad=True)
    T.collapse_alpha_random()(x).sum().backward()
    assert x.grad[:, :3].abs().min() > 0  # rgb gets gradient alpha > 0
    assert x.grad[:, 3].abs().sum() > 0  # alpha gets gradient rgb - bg
    with pytest.raises(ValueError):
        T.collapse_alpha_random()(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize("h, w", [(5, 5), (6, 6), (4, 6)])
def test_random_rotate_quarter_turn_is_exact_on_small_inputs(h, w):
    # a rotation by exactly pi/2 about the centre maps pixel centres onto pixel centres: compare with torch.rot90
    x = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w) + 1
    y = T.random_rotate([math.pi / 2], units="radians")(x)
    if h == w:
        turned = [torch.rot90(x, k, dims=(2, 3)) for k in (1, 3)]
        assert any(torch.equal(y, t) for t in turned)
    else:  # non-square: the central square window turns exactly, the rest falls outside (zeros)
        assert y.shape == x.shape and set(y.unique().tolist()) - {0.0} <= set(x.unique().tolist())
