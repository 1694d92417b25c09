"""Image parameterizations: each returns ``(params, image_fn)``; ``image_fn()`` gives ``[batch, 3, H, W]`` in [0, 1].

Faithful to Lucid: the FFT parameterization scales each frequency by ``1 / max(f, 1/max(h, w)) ** decay_power``,
starts from N(0, 0.01), inverts with an orthonormal inverse FFT (Lucid: ``sqrt(h * w)`` times TensorFlow's
``irfft2d``, which divides by ``h * w``) and divides by 4; colours are
decorrelated with the square root of ImageNet's colour correlation, normalised by its largest column norm; a
sigmoid maps to valid RGB.

Example::

    >>> from mechscope.vision.featvis.param import image
    >>> params, image_fn = image(64, batch=2)
    >>> image_fn().shape
    torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

from collections.abc import Callable

import torch

ImageFn = Callable[[], torch.Tensor]

COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION_NORMALIZED = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()


def rfft2d_freqs(h: int, w: int) -> torch.Tensor:
    """Spatial frequency magnitude of each coefficient of a real 2-D FFT of an ``h x w`` image:
    ``[h, w // 2 + 1]``."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def pixel_image(shape: tuple[int, int, int, int], sd: float = 0.01, device=None) -> tuple[list[torch.Tensor], ImageFn]:
    """Raw pixels ``[batch, channels, h, w]`` initialised from N(0, sd)."""
    t = (torch.randn(shape, device=device) * sd).requires_grad_(True)
    return [t], lambda: t


def fft_image(
    shape: tuple[int, int, int, int], sd: float = 0.01, decay_power: float = 1.0, device=None
) -> tuple[list[torch.Tensor], ImageFn]:
    """Lucid's Fourier parameterization with 1/f scaling; ``shape = [batch, channels, h, w]``."""
    b, c, h, w = shape
    freqs = rfft2d_freqs(h, w).to(device)
    spectrum = (torch.randn(b, c, *freqs.shape, 2, device=device) * sd).requires_grad_(True)
    scale = 1.0 / torch.clamp(freqs, min=1.0 / max(w, h)) ** decay_power
    # Lucid scales by sqrt(h * w) and inverts with TensorFlow's irfft2d, which divides by h * w: together an
    # orthonormal inverse transform.  PyTorch's "backward" norm divides by h * w as TensorFlow does.
    scale = scale * (w * h) ** 0.5

    def image_fn() -> torch.Tensor:
        scaled = scale * torch.view_as_complex(spectrum)
        return torch.fft.irfftn(scaled, s=(h, w), norm="backward") / 4.0

    return [spectrum], image_fn


def linear_decorrelate_color(t: torch.Tensor) -> torch.Tensor:
    """Map decorrelated colour coordinates ``[batch, 3, H, W]`` to RGB with Lucid's correlation square root."""
    m = COLOR_CORRELATION_NORMALIZED.to(t.device, t.dtype)
    return torch.einsum("bchw,dc->bdhw", t, m)


def to_valid_rgb(image_fn: ImageFn, decorrelate: bool = True, sigmoid: bool = True) -> ImageFn:
    """Wrap ``image_fn`` so that its output is RGB in [0, 1]."""

    def inner() -> torch.Tensor:
        t = image_fn()
        if decorrelate:
            t = linear_decorrelate_color(t)
        return torch.sigmoid(t) if sigmoid else (t.clamp(-1, 1) + 1) / 2

    return inner


def image(
    w: int,
    h: int | None = None,
    *,
    batch: int = 1,
    sd: float | None = None,
    decorrelate: bool = True,
    fft: bool = True,
    device=None,
) -> tuple[list[torch.Tensor], ImageFn]:
    """Lucid's default image parameterization: FFT + decorrelated colour + sigmoid, ``[batch, 3, h, w]``."""
    shape = (batch, 3, h or w, w)
    params, fn = (fft_image if fft else pixel_image)(shape, sd=0.01 if sd is None else sd, device=device)
    return params, to_valid_rgb(fn, decorrelate=decorrelate)
