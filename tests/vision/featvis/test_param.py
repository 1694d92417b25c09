"""Image parameterizations: Lucid's colour decorrelation, 1/f FFT parameterization, valid-RGB mapping."""

import math

import numpy as np
import pytest
import torch

from mechscope.vision.featvis import param

# Lucid's colour correlation square root (lucid/optvis/param/color.py), typed in independently of the module.
LUCID_SVD_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float64)


def numpy_freqs(h, w):
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def lucid_fft_reference(spectrum: np.ndarray, h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
    """Lucid's fft_image (even w) in numpy: scale * sqrt(w*h), TF's irfft2d (which divides by h*w), / 4."""
    coeffs = spectrum[..., 0] + 1j * spectrum[..., 1]
    scale = 1.0 / np.maximum(numpy_freqs(h, w), 1.0 / max(h, w)) ** decay_power
    scale = scale * np.sqrt(w * h)
    return np.fft.irfft2(coeffs * scale, s=(h, w)) / 4.0  # numpy's default ("backward") norm == tf irfft2d


def _single_coefficient_image(h, w, ky, kx, decay_power=1.0, imag=False):
    """The FFT image produced by a spectrum that is 1 at one coefficient and 0 elsewhere."""
    params, fn = param.fft_image((1, 1, h, w), decay_power=decay_power)
    (spectrum,) = params
    with torch.no_grad():
        spectrum.zero_()
        spectrum[0, 0, ky, kx, 1 if imag else 0] = 1.0
    return fn().detach().double()


# --- colour decorrelation ------------------------------------------------------------------------------------


def test_color_correlation_matches_lucid():
    assert np.allclose(param.COLOR_CORRELATION_SVD_SQRT.numpy(), LUCID_SVD_SQRT)


def test_color_correlation_normalized_by_largest_column_norm():
    max_norm = np.linalg.norm(LUCID_SVD_SQRT, axis=0).max()
    assert max_norm == pytest.approx(0.4619524, abs=1e-6)
    # the first column has the largest norm: sqrt(0.26^2 + 0.27^2 + 0.27^2)
    assert max_norm == pytest.approx(math.sqrt(0.26**2 + 0.27**2 + 0.27**2))
    normalized = param.COLOR_CORRELATION_NORMALIZED.double().numpy()
    assert np.allclose(normalized, LUCID_SVD_SQRT / max_norm, atol=1e-6)
    assert np.linalg.norm(normalized, axis=0).max() == pytest.approx(1.0, abs=1e-6)


def test_linear_decorrelate_color_is_matrix_times_colour_vector():
    t = torch.randn(2, 3, 5, 7)
    out = param.linear_decorrelate_color(t)
    assert out.shape == t.shape
    m = LUCID_SVD_SQRT / np.linalg.norm(LUCID_SVD_SQRT, axis=0).max()
    # Lucid: t_flat @ M.T, i.e. every pixel's colour vector c becomes M @ c
    expected = np.einsum("dc,bchw->bdhw", m, t.double().numpy())
    assert np.allclose(out.double().numpy(), expected, atol=1e-5)
    # one pixel by hand
    c = t[1, :, 3, 4].double().numpy()
    assert np.allclose(out[1, :, 3, 4].double().numpy(), m @ c, atol=1e-5)


# --- frequencies ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h,w", [(64, 64), (63, 65), (8, 5), (7, 12)])
def test_rfft2d_freqs_matches_numpy(h, w):
    freqs = param.rfft2d_freqs(h, w)
    assert tuple(freqs.shape) == (h, w // 2 + 1)
    assert np.allclose(freqs.double().numpy(), numpy_freqs(h, w), atol=1e-6)
    assert freqs[0, 0] == 0
    assert freqs.max() <= math.sqrt(0.5) + 1e-6  # Nyquist in both directions


# --- FFT parameterization ------------------------------------------------------------------------------------


@pytest.mark.parametrize("h,w", [(64, 64), (63, 65), (32, 48), (17, 16)])
def test_fft_image_shape_real_finite(h, w):
    params, fn = param.fft_image((2, 3, h, w))
    img = fn()
    assert img.shape == (2, 3, h, w)
    assert not img.is_complex()
    assert img.dtype == torch.float32
    assert torch.isfinite(img).all()
    (spectrum,) = params
    assert spectrum.shape == (2, 3, h, w // 2 + 1, 2)
    assert spectrum.requires_grad


def test_fft_image_init_std_is_sd():
    torch.manual_seed(1)
    (spectrum,), _ = param.fft_image((4, 3, 64, 64))
    assert spectrum.detach().std().item() == pytest.approx(0.01, rel=0.05)
    (spectrum,), _ = param.fft_image((4, 3, 64, 64), sd=0.1)
    assert spectrum.detach().std().item() == pytest.approx(0.1, rel=0.05)


def test_fft_image_gradients_reach_spectrum():
    (spectrum,), fn = param.fft_image((1, 3, 16, 20))
    weights = torch.randn(1, 3, 16, 20)
    (fn() * weights).sum().backward()
    assert spectrum.grad is not None
    assert spectrum.grad.shape == spectrum.shape
    assert torch.isfinite(spectrum.grad).all()
    assert (spectrum.grad.abs() > 0).float().mean() > 0.5


def test_fft_image_is_linear_in_spectrum():
    params, fn = param.fft_image((1, 3, 16, 16))
    (spectrum,) = params
    a = fn().detach().clone()
    with torch.no_grad():
        spectrum.mul_(3.0)
    assert torch.allclose(fn().detach(), 3.0 * a, atol=1e-6)


@pytest.mark.parametrize("decay_power", [1.0, 2.0])
def test_fft_scale_is_one_over_frequency(decay_power):
    """The energy of the image made by one (non-edge) coefficient is proportional to scale(f)^2 = f^(-2 decay)."""
    h = w = 64
    e1 = _single_coefficient_image(h, w, 0, 1, decay_power).pow(2).sum().item()  # f = 1/64
    e4 = _single_coefficient_image(h, w, 0, 4, decay_power).pow(2).sum().item()  # f = 4/64
    e_diag = _single_coefficient_image(h, w, 3, 4, decay_power).pow(2).sum().item()  # f = 5/64
    assert e1 / e4 == pytest.approx(4.0 ** (2 * decay_power), rel=1e-4)
    assert e1 / e_diag == pytest.approx(5.0 ** (2 * decay_power), rel=1e-4)
    # low frequencies get a larger scale than high ones
    assert e1 > e4 > e_diag


def test_fft_scale_clamps_dc_to_lowest_frequency():
    """f = 0 is clamped to 1/max(h, w): DC gets the scale of the lowest frequency (its energy is half as it has
    no Hermitian twin)."""
    h, w = 32, 64
    dc = _single_coefficient_image(h, w, 0, 0)
    assert torch.allclose(dc, dc.mean().expand_as(dc))  # constant image
    lowest = _single_coefficient_image(h, w, 0, 1)  # f = 1/64 = 1/max(h, w)
    assert dc.pow(2).sum().item() / lowest.pow(2).sum().item() == pytest.approx(0.5, rel=1e-4)


def test_fft_image_statistics_low_frequencies_dominate():
    torch.manual_seed(3)
    _, fn = param.fft_image((8, 3, 64, 64))
    img = fn().detach().double().numpy()
    power = np.abs(np.fft.rfft2(img)) ** 2
    f = numpy_freqs(64, 64)
    low = power[..., (f > 0) & (f < 0.1)].mean()
    high = power[..., f > 0.3].mean()
    assert low > 20 * high


def test_fft_image_matches_lucid_reference():
    torch.manual_seed(2)
    h, w = 32, 48
    params, fn = param.fft_image((1, 3, h, w))
    (spectrum,) = params
    expected = lucid_fft_reference(spectrum.detach().double().numpy(), h, w)
    assert np.allclose(fn().detach().double().numpy(), expected, atol=1e-5)


def test_fft_image_initial_std_is_small_and_size_independent():
    torch.manual_seed(4)
    stds = []
    for size in (64, 128):
        _, fn = param.fft_image((4, 3, size, size))
        stds.append(fn().detach().std().item())
    for s in stds:
        assert 0.005 < s < 0.05
    assert stds[1] / stds[0] == pytest.approx(1.0, rel=0.3)


# --- pixel parameterization and valid RGB --------------------------------------------------------------------


def test_pixel_image():
    torch.manual_seed(0)
    (t,), fn = param.pixel_image((2, 3, 40, 40), sd=0.1)
    assert fn() is t
    assert t.requires_grad and t.is_leaf
    assert t.shape == (2, 3, 40, 40)
    assert t.detach().std().item() == pytest.approx(0.1, rel=0.05)


@pytest.mark.parametrize("decorrelate", [True, False])
@pytest.mark.parametrize("sigmoid", [True, False])
def test_to_valid_rgb_in_unit_range(decorrelate, sigmoid):
    raw = torch.randn(2, 3, 8, 8) * 10  # far outside [0, 1]
    out = param.to_valid_rgb(lambda: raw, decorrelate=decorrelate, sigmoid=sigmoid)()
    assert out.shape == raw.shape
    assert out.min() >= 0 and out.max() <= 1
    # not degenerate: it depends on the input
    assert out.std() > 0.1


def test_to_valid_rgb_sigmoid_of_decorrelated():
    raw = torch.randn(1, 3, 4, 4)
    out = param.to_valid_rgb(lambda: raw)()
    assert torch.allclose(out, torch.sigmoid(param.linear_decorrelate_color(raw)))
    plain = param.to_valid_rgb(lambda: raw, decorrelate=False)()
    assert torch.allclose(plain, torch.sigmoid(raw))
    assert torch.allclose(param.to_valid_rgb(lambda: torch.zeros(1, 3, 2, 2))(), torch.full((1, 3, 2, 2), 0.5))


# --- image() -------------------------------------------------------------------------------------------------


def test_image_default_shape_range_and_grad():
    params, fn = param.image(24, batch=2)
    img = fn()
    assert img.shape == (2, 3, 24, 24)
    assert img.min() >= 0 and img.max() <= 1
    img.mean().backward()
    assert all(p.grad is not None for p in params)


def test_image_width_then_height():
    params, fn = param.image(40, 24)
    assert fn().shape == (1, 3, 24, 40)  # [batch, 3, h, w]
    (spectrum,) = params
    assert spectrum.shape == (1, 3, 24, 40 // 2 + 1, 2)


def test_image_pixel_parameterization():
    params, fn = param.image(16, fft=False, decorrelate=False, sd=0.2)
    (t,) = params
    assert t.shape == (1, 3, 16, 16)
    assert torch.allclose(fn(), torch.sigmoid(t))


# --- low-resolution tensors and the Laplacian pyramid ---------------------------------------------------------


def np_upsample(u: np.ndarray, H: int, W: int) -> np.ndarray:
    """Separable linear interpolation sampling pixel centres, clamped at the edges (np.interp clamps)."""
    h, w = u.shape[-2:]
    ys = (np.arange(H) + 0.5) * h / H - 0.5
    xs = (np.arange(W) + 0.5) * w / W - 0.5
    rows = np.apply_along_axis(lambda v: np.interp(ys, np.arange(h), v), -2, u)
    return np.apply_along_axis(lambda v: np.interp(xs, np.arange(w), v), -1, rows)


@pytest.mark.parametrize(
    "shape,under",
    [((2, 3, 16, 16), (2, 3, 4, 4)), ((3, 3, 17, 23), (1, 3, 5, 7)), ((1, 4, 9, 8), (1, 1, 9, 8))],
)
def test_lowres_tensor_matches_separable_linear_interpolation(shape, under):
    torch.manual_seed(0)
    (low,), fn = param.lowres_tensor(shape, under, sd=1.0)
    assert low.shape == under and low.requires_grad and low.is_leaf
    out = fn()
    assert out.shape == shape
    expected = np.broadcast_to(np_upsample(low.detach().double().numpy(), *shape[-2:]), shape)
    assert np.allclose(out.detach().double().numpy(), expected, atol=1e-5)
    if under[-2:] == shape[-2:]:  # no resizing at all: the parameter itself, broadcast
        assert torch.equal(out, low.expand(shape))


def test_lowres_tensor_reproduces_constant_and_shares_leading_one():
    (low,), fn = param.lowres_tensor((4, 3, 15, 12), (1, 3, 4, 3))
    with torch.no_grad():
        low.copy_(torch.tensor([0.25, -1.0, 2.0])[None, :, None, None].expand_as(low))
    out = fn()
    assert torch.allclose(out, torch.tensor([0.25, -1.0, 2.0])[None, :, None, None].expand(4, 3, 15, 12))
    with torch.no_grad():
        low.normal_()
    out = fn()
    for k in range(1, 4):
        assert torch.equal(out[k], out[0])  # a leading 1 is shared by every batch element
    assert out[0].std() > 0.1


def test_lowres_tensor_factor_two_pixel_centres():
    """Factor-2 upsampling of [a, b]: centres at -1/4, 1/4, 3/4, 5/4 of a low-res pixel -> a, .75a+.25b, ..."""
    (low,), fn = param.lowres_tensor((1, 1, 1, 4), (1, 1, 1, 2))
    with torch.no_grad():
        low.copy_(torch.tensor([[[[1.0, 5.0]]]]))
    assert torch.allclose(fn()[0, 0, 0], torch.tensor([1.0, 2.0, 4.0, 5.0]))


def test_lowres_tensor_batch_two_interpolates_linearly_across_batch():
    (low,), fn = param.lowres_tensor((5, 3, 8, 8), (2, 3, 2, 2), sd=1.0)
    out = fn().detach()
    up = torch.tensor(np_upsample(low.detach().double().numpy(), 8, 8), dtype=torch.float32)
    for k in range(5):
        t = k / 4
        assert torch.allclose(out[k], (1 - t) * up[0] + t * up[1], atol=1e-5)


def test_lowres_tensor_offset_shifts_with_mirrored_border():
    shifted = {}
    for offset in (None, (2, 3), True):  # True: half the upsampling factor 4 -> (2, 2)
        torch.manual_seed(1)  # the same underlying parameter each time
        shifted[offset] = param.lowres_tensor((1, 3, 12, 16), (1, 3, 3, 4), offset=offset, sd=1.0)[1]().detach()
    base = shifted[None]
    assert torch.equal(shifted[(2, 3)][..., 2:, 3:], base[..., :-2, :-3])
    assert torch.equal(shifted[(2, 3)][..., 0, 3:], base[..., 1, :-3])  # rows -1, -2 mirror rows 0, 1
    assert torch.equal(shifted[(2, 3)][..., 1, 3:], base[..., 0, :-3])
    assert torch.equal(shifted[True][..., 2:, 2:], base[..., :-2, :-2])


def test_lowres_tensor_rejects_impossible_shapes():
    with pytest.raises(ValueError):
        param.lowres_tensor((1, 3, 8, 8), (1, 2, 4, 4))
    with pytest.raises(ValueError):
        param.lowres_tensor((1, 3, 8, 8), (1, 3, 16, 4))


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 17, 24), (3, 4, 5, 9)])
def test_laplacian_pyramid_levels_and_sum(shape):
    torch.manual_seed(2)
    params, fn = param.laplacian_pyramid(shape, n_levels=4, sd=0.5)
    b, c, h, w = shape
    assert [tuple(p.shape) for p in params] == [(b, c, max(1, h >> n), max(1, w >> n)) for n in range(4)]
    assert all(p.requires_grad and p.is_leaf for p in params)
    expected = sum(np_upsample(p.detach().double().numpy(), h, w) for p in params)
    assert np.allclose(fn().detach().double().numpy(), expected, atol=1e-5)


# --- image(): parameterization choices and alpha --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fft", "pixel", "laplacian"])
@pytest.mark.parametrize("w,h,batch", [(16, None, 1), (15, 9, 2), (12, 21, 3)])
def test_image_every_param_shape_and_range(kind, w, h, batch):
    params, fn = param.image(w, h, batch=batch, param=kind, sd=1.0)
    img = fn()
    assert img.shape == (batch, 3, h or w, w)
    assert img.min() >= 0 and img.max() <= 1 and img.std() > 0.01
    assert len(params) == (4 if kind == "laplacian" else 1)


def test_image_param_and_fft_flag():
    assert param.image(8, fft=False)[0][0].shape == param.image(8, param="pixel")[0][0].shape == (1, 3, 8, 8)
    assert param.image(8)[0][0].shape == (1, 3, 8, 5, 2)  # default unchanged: the FFT spectrum
    with pytest.raises(ValueError):
        param.image(8, fft=False, param="laplacian")
    with pytest.raises(ValueError):
        param.image(8, param="wavelet")


@pytest.mark.parametrize("kind", ["fft", "pixel", "laplacian"])
def test_image_alpha_channel(kind):
    params, fn = param.image(10, 7, batch=2, alpha=True, param=kind, sd=2.0)
    img = fn()
    assert img.shape == (2, 4, 7, 10)
    assert img[:, 3].min() > 0 and img[:, 3].max() < 1 and img[:, 3].std() > 0.01
    if kind == "pixel":
        (t,) = params
        assert torch.allclose(img[:, 3:], torch.sigmoid(t[:, 3:]))
        assert torch.allclose(img[:, :3], torch.sigmoid(param.linear_decorrelate_color(t[:, :3])))


# --- shared_image (Lucid's interpolation recipe) ---------------------------------------------------------------


def test_shared_image_params_and_sharing():
    torch.manual_seed(3)
    params, fn = param.shared_image(32, batch=5, sd=0.5, decorrelate=False)
    shapes = [tuple(p.shape) for p in params]
    assert shapes[0] == (5, 3, 32, 17, 2)  # per-frame FFT spectrum
    assert sorted(shapes[1:]) == sorted(
        [(1, 3, 16, 16), (1, 3, 8, 8), (1, 3, 4, 4), (2, 3, 4, 4), (1, 3, 2, 2), (2, 3, 2, 2)]
    )
    img = fn()
    assert img.shape == (5, 3, 32, 32) and img.min() >= 0 and img.max() <= 1
    with torch.no_grad():
        for p in params:
            if p.shape[0] != 1:
                p.zero_()
    shared = fn().detach()
    assert all(torch.equal(shared[k], shared[0]) for k in range(5)) and shared.std() > 0.01
    with torch.no_grad():  # only the batch-2 tensors left: frames interpolate linearly (before the sigmoid)
        for p in params:
            p.zero_() if p.shape[0] != 2 else p.normal_()
    logits = torch.logit(fn().detach().double())
    for k in range(5):
        assert torch.allclose(logits[k], (1 - k / 4) * logits[0] + k / 4 * logits[4], atol=1e-4)


def test_shared_image_batch_one_and_non_square():
    params, fn = param.shared_image((20, 12), batch=1, n_shared_levels=2)
    assert fn().shape == (1, 3, 20, 12)
    assert len(params) == 3 and all(p.shape[0] == 1 for p in params)


# --- CPPN ------------------------------------------------------------------------------------------------------


def test_cppn_coordinates_unit_std_grid():
    for n in (16, 64):
        coords = param.cppn_coordinates(n, n)
        assert coords.shape == (1, 2, n, n)
        x = coords[0, 0, 0].double().numpy()  # x varies along the width
        assert np.allclose(x, np.linspace(-math.sqrt(3), math.sqrt(3), n), atol=1e-6)
        assert torch.equal(coords[0, 1], coords[0, 0].t())
        # population std of linspace(-sqrt 3, sqrt 3, n) is sqrt((n + 1) / (n - 1)) -> 1
        assert x.std() == pytest.approx(math.sqrt((n + 1) / (n - 1)), rel=1e-5)
        assert coords.double().std(unbiased=False).item() == pytest.approx(x.std(), rel=1e-4)
    assert np.sqrt((np.linspace(-math.sqrt(3), math.sqrt(3), 10**5) ** 2).mean()) == pytest.approx(1.0, rel=1e-4)


def test_composite_activation():
    x = torch.randn(2, 5, 3, 4)
    out = param.composite_activation(x)
    a = np.arctan(x.double().numpy())
    assert out.shape == (2, 10, 3, 4)
    assert np.allclose(out.double().numpy(), np.concatenate([a / 0.67, a * a / 0.6], axis=1), atol=1e-6)


@pytest.mark.parametrize("size,batch,normalize", [(16, 1, False), ((9, 14), 3, False), (11, 2, True)])
def test_cppn_shape_params_and_grey_start(size, batch, normalize):
    torch.manual_seed(4)
    params, fn = param.cppn(size, batch=batch, num_output_channels=4, num_layers=3, normalize=normalize)
    h, w = (size, size) if isinstance(size, int) else size
    img = fn()
    assert img.shape == (batch, 4, h, w)
    assert torch.all(img == 0.5)  # zero output weights and bias: uniform grey
    assert len(params) == 3 * (3 if normalize else 2) + 2
    assert all(p.is_leaf and p.requires_grad for p in params)
    assert params[-2].shape == (4, 48, 1, 1) and torch.all(params[-2] == 0)


def test_cppn_initialisation_statistics():
    torch.manual_seed(5)
    params, fn = param.cppn(8, num_hidden_channels=32, num_layers=6)
    weights, biases = params[0:-2:2], params[1:-2:2]
    assert weights[0].shape == (32, 2, 1, 1) and weights[1].shape == (32, 64, 1, 1)
    hidden = torch.cat([w.detach().flatten() for w in weights[1:]])
    assert hidden.std().item() == pytest.approx(math.sqrt(1 / 64), rel=0.05)
    assert torch.cat([b.detach() for b in biases]).std().item() == pytest.approx(0.1, rel=0.15)
    _, tinted = param.cppn(8, output_bias_sd=0.1)
    img = tinted().detach()
    assert torch.allclose(img, img[:, :, :1, :1].expand_as(img))  # uniform per channel, Lucid's start
    assert img.std() > 0


def test_cppn_batch_elements_identical():
    params, fn = param.cppn(10, batch=3)
    with torch.no_grad():
        params[-2].normal_()  # output weights off zero: a patterned image
    img = fn()
    assert img.std() > 0.05
    assert torch.equal(img[0], img[1]) and torch.equal(img[0], img[2])  # shared weights (as in Lucid)


# --- optimisation: gradients reach every parameter ---------------------------------------------------------------


PARAMETERIZATIONS = {
    "fft": (lambda: param.image(12, 10, batch=2), 0.05),
    "pixel": (lambda: param.image(12, 10, batch=2, param="pixel"), 0.05),
    "laplacian": (lambda: param.image(12, 10, batch=2, param="laplacian"), 0.05),
    "alpha": (lambda: param.image(12, batch=2, alpha=True), 0.05),
    "shared": (lambda: param.shared_image(16, batch=3), 0.05),
    "cppn": (lambda: param.cppn(12, batch=2, num_layers=4), 0.005),
    "cppn_norm": (lambda: param.cppn(12, num_layers=4, normalize=True), 0.005),
}


@pytest.mark.parametrize("name", list(PARAMETERIZATIONS))
def test_adam_increases_red_and_moves_every_param(name):
    torch.manual_seed(6)
    make, lr = PARAMETERIZATIONS[name]
    params, fn = make()
    start = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=lr)
    before = fn()[:, 0].mean().item()
    for _ in range(20):
        opt.zero_grad()
        loss = -fn()[:, 0].mean()
        loss.backward()
        opt.step()
    after = fn()[:, 0].mean().item()
    assert after > before + 0.01
    # every parameter moved (for a CPPN the hidden layers only get gradient once the output weights left 0;
    # with instance norm the conv biases are cancelled by the normalisation, so skip those)
    for i, (p, p0) in enumerate(zip(params, start)):
        if name == "cppn_norm" and i < len(params) - 2 and i % 3 == 1:
            continue
        assert not torch.equal(p.detach(), p0), f"parameter {i} of {name} did not move"
