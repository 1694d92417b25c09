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
