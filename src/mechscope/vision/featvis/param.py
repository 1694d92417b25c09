"""Image parameterizations: each returns ``(params, image_fn)``; ``params`` are leaf tensors to optimise and
``image_fn()`` gives ``[batch, C, H, W]`` (``C = 3``, or 4 with alpha) in [0, 1].

Faithful to Lucid: the FFT parameterization scales each frequency by ``1 / max(f, 1/max(h, w)) ** decay_power``,
starts from N(0, 0.01), inverts with an orthonormal inverse FFT (Lucid: ``sqrt(h * w)`` times TensorFlow's
``irfft2d``, which divides by ``h * w``) and divides by 4; colours are
decorrelated with the square root of ImageNet's colour correlation, normalised by its largest column norm; a
sigmoid maps to valid RGB.

Also Lucid's ``lowres_tensor`` (a bilinearly upsampled low-resolution tensor; a leading dimension of 1 is shared
by the whole batch), ``laplacian_pyramid`` (a sum of those at halving resolutions), ``cppn`` (a compositional
pattern producing network over the pixel coordinates) and ``shared_image`` (Lucid's interpolation recipe: per
frame FFT images plus low-resolution structure shared by all frames).

Every parameter is created on ``device`` (the model's, in ``render``), but its random start is drawn by the CPU
generator and then moved there: a seed gives the same start on a GPU as on the CPU, so a unit's visualization
does not depend on which kind of worker computed it (up to the devices' float rounding).

Example::

    >>> from mechscope.vision.featvis.param import cppn, image
    >>> params, image_fn = image(64, batch=2)
    >>> image_fn().shape
    torch.Size([2, 3, 64, 64])
    >>> image(32, 16, param="laplacian", alpha=True)[1]().shape
    torch.Size([1, 4, 16, 32])
    >>> cppn(8)[1]().mean().item()
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

ImageFn = Callable[[], torch.Tensor]
Shape4 = tuple[int, int, int, int]

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
    t = (torch.randn(shape).to(device) * sd).requires_grad_(True)
    return [t], lambda: t


def fft_image(
    shape: tuple[int, int, int, int], sd: float = 0.01, decay_power: float = 1.0, device=None
) -> tuple[list[torch.Tensor], ImageFn]:
    """Lucid's Fourier parameterization with 1/f scaling; ``shape = [batch, channels, h, w]``."""
    b, c, h, w = shape
    freqs = rfft2d_freqs(h, w).to(device)
    spectrum = (torch.randn(b, c, *freqs.shape, 2).to(device) * sd).requires_grad_(True)
    scale = 1.0 / torch.clamp(freqs, min=1.0 / max(w, h)) ** decay_power
    # Lucid scales by sqrt(h * w) and inverts with TensorFlow's irfft2d, which divides by h * w: together an
    # orthonormal inverse transform.  PyTorch's "backward" norm divides by h * w as TensorFlow does.
    scale = scale * (w * h) ** 0.5

    def image_fn() -> torch.Tensor:
        scaled = scale * torch.view_as_complex(spectrum)
        return torch.fft.irfftn(scaled, s=(h, w), norm="backward") / 4.0

    return [spectrum], image_fn


def _resize_batch(t: torch.Tensor, batch: int) -> torch.Tensor:
    """``[n, ...] -> [batch, ...]``: n == 1 broadcasts (a view), otherwise linear along the batch with both
    ends pinned (element 0 is ``t[0]``, element ``batch - 1`` is ``t[-1]``)."""
    n = t.shape[0]
    if n == batch:
        return t
    if n == 1:
        return t.expand(batch, *t.shape[1:])
    flat = t.reshape(n, -1).t().unsqueeze(0)  # [1, rest, n]
    out = F.interpolate(flat, size=batch, mode="linear", align_corners=True)
    return out[0].t().reshape(batch, *t.shape[1:])


def _shift_symmetric(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift ``[..., H, W]`` down by ``dy`` and right by ``dx`` pixels; the vacated rows / columns mirror the
    first ones (TensorFlow's SYMMETRIC padding, edge included), then crop back to ``H x W``."""
    h, w = t.shape[-2:]
    if dy:
        t = torch.cat([t[..., :dy, :].flip(-2), t], dim=-2)[..., :h, :]
    if dx:
        t = torch.cat([t[..., :dx].flip(-1), t], dim=-1)[..., :w]
    return t


def lowres_tensor(
    shape: Shape4,
    underlying_shape: Shape4,
    offset: bool | int | tuple[int, int] | None = None,
    sd: float = 0.01,
    device=None,
) -> tuple[list[torch.Tensor], ImageFn]:
    """Lucid's ``lowres_tensor``: a parameter of ``underlying_shape = [n, c, h', w']`` from N(0, sd), upsampled
    to ``shape = [batch, C, H, W]``.

    Spatially: bilinear with centred sampling (``align_corners=False``; output pixel ``i`` reads the low-res
    coordinate ``(i + 0.5) * h' / H - 0.5``, clamped to the edge), so a constant stays exactly constant and
    ``h' == H`` is the identity.  Lucid's TF1 ``resize_bilinear`` samples at ``i * h' / H`` instead.
    Batch: ``n == 1`` is shared by every batch element (Lucid's way of sharing structure across the frames
    of an interpolation); other ``n`` are interpolated linearly along the batch with both ends pinned.
    Channels: ``c`` is ``C`` or 1 (broadcast).

    ``offset`` (Lucid's): ``None`` or ``False``: no shift; an int or ``(dy, dx)``: shift the upsampled tensor
    down / right by that many whole pixels, mirroring the first rows / columns into the gap; ``True``: half
    the upsampling factor per axis, truncated (``int(H / h' / 2)``, Lucid's "90 degrees of phase").
    Unlike Lucid, offsets apply to the two spatial axes only.
    """
    b, c, h, w = shape
    ub, uc, uh, uw = underlying_shape
    if uc not in (1, c) or not (1 <= uh <= h and 1 <= uw <= w) or ub < 1:
        raise ValueError(f"cannot upsample {tuple(underlying_shape)} to {tuple(shape)}")
    if offset is None or offset is False:
        dy = dx = 0
    elif offset is True:
        dy, dx = int(h / uh / 2), int(w / uw / 2)
    elif isinstance(offset, int):
        dy = dx = offset
    else:
        dy, dx = (int(v) for v in offset)
    if not (0 <= dy <= h and 0 <= dx <= w):
        raise ValueError(f"offset {(dy, dx)} out of range for {h}x{w}")
    low = (torch.randn(tuple(underlying_shape)).to(device) * sd).requires_grad_(True)

    def image_fn() -> torch.Tensor:
        t = low
        if (uh, uw) != (h, w):
            t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
        t = _resize_batch(t, b).expand(b, c, h, w)
        return _shift_symmetric(t, dy, dx)

    return [low], image_fn


def laplacian_pyramid(
    shape: Shape4, n_levels: int = 4, sd: float = 0.01, device=None
) -> tuple[list[torch.Tensor], ImageFn]:
    """Lucid's Laplacian pyramid: the sum over ``n < n_levels`` of ``lowres_tensor(shape, [batch, C, H // 2**n,
    W // 2**n])`` (each at least 1 x 1); ``shape = [batch, C, H, W]``; params are the ``n_levels`` tensors."""
    b, c, h, w = shape
    parts = [
        lowres_tensor(shape, (b, c, max(1, h // 2**n), max(1, w // 2**n)), sd=sd, device=device)
        for n in range(n_levels)
    ]
    fns = [fn for _, fn in parts]
    return [p for ps, _ in parts for p in ps], lambda: sum(fn() for fn in fns)


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


PARAMETERIZATIONS: dict[str, Callable[..., tuple[list[torch.Tensor], ImageFn]]] = {
    "fft": fft_image,
    "pixel": pixel_image,
    "laplacian": laplacian_pyramid,
}


def image(
    w: int,
    h: int | None = None,
    *,
    batch: int = 1,
    sd: float | None = None,
    decorrelate: bool = True,
    fft: bool = True,
    alpha: bool = False,
    param: str = "fft",
    device=None,
) -> tuple[list[torch.Tensor], ImageFn]:
    """Lucid's default image parameterization: FFT + decorrelated colour + sigmoid, ``[batch, 3, h, w]``.

    ``param``: ``"fft"`` | ``"pixel"`` | ``"laplacian"`` (``laplacian_pyramid`` with 4 levels);
    ``fft=False`` is the older spelling of ``param="pixel"``.  ``alpha=True`` adds a fourth channel: the first
    three go through ``to_valid_rgb``, the fourth through a sigmoid, giving ``[batch, 4, h, w]`` (composite it
    with ``transform.collapse_alpha_random`` before the model).
    """
    if not fft:
        if param not in ("fft", "pixel"):
            raise ValueError(f"fft=False contradicts param={param!r}")
        param = "pixel"
    if param not in PARAMETERIZATIONS:
        raise ValueError(f"param must be one of {sorted(PARAMETERIZATIONS)}, got {param!r}")
    shape = (batch, 4 if alpha else 3, h or w, w)
    params, fn = PARAMETERIZATIONS[param](shape, sd=0.01 if sd is None else sd, device=device)
    if not alpha:
        return params, to_valid_rgb(fn, decorrelate=decorrelate)

    def rgba() -> torch.Tensor:
        t = fn()
        rgb = to_valid_rgb(lambda: t[:, :3], decorrelate=decorrelate)()
        return torch.cat([rgb, torch.sigmoid(t[:, 3:])], dim=1)

    return params, rgba


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def shared_image(
    size: int | tuple[int, int],
    batch: int,
    n_shared_levels: int = 4,
    n_batch_levels: int = 2,
    sd: float = 0.01,
    decorrelate: bool = True,
    device=None,
) -> tuple[list[torch.Tensor], ImageFn]:
    """Lucid's interpolation recipe, ``[batch, 3, H, W]`` (``size``: ``H = W`` or ``(H, W)``).

    Every frame has its own FFT image; added to it, for ``k = 1..n_shared_levels``, a ``lowres_tensor`` of
    ``[1, 3, H // 2**k, W // 2**k]`` shared by all frames, and for the ``n_batch_levels`` coarsest of those
    levels one of ``[2, 3, ...]`` interpolated linearly across the batch (frame 0 to frame ``batch - 1``;
    only when ``batch >= 2``).  The sum goes through ``to_valid_rgb``.  With the defaults this is Lucid's
    notebook recipe: shared levels /2, /4, /8, /16 and batch-interpolated levels /8, /16.  Neighbouring
    frames of an interpolation then share structure.
    """
    h, w = _hw(size)
    shape = (batch, 3, h, w)
    parts = [fft_image(shape, sd=sd, device=device)]
    for k in range(1, n_shared_levels + 1):
        low_hw = (max(1, h // 2**k), max(1, w // 2**k))
        parts.append(lowres_tensor(shape, (1, 3, *low_hw), sd=sd, device=device))
        if batch >= 2 and k > n_shared_levels - n_batch_levels:
            parts.append(lowres_tensor(shape, (2, 3, *low_hw), sd=sd, device=device))
    fns = [fn for _, fn in parts]
    return [p for ps, _ in parts for p in ps], to_valid_rgb(lambda: sum(fn() for fn in fns), decorrelate)


def composite_activation(x: torch.Tensor) -> torch.Tensor:
    """Lucid's CPPN activation ``[b, c, H, W] -> [b, 2c, H, W]``: ``a = atan(x)``, then ``a / 0.67`` and
    ``a^2 / 0.6`` concatenated along channels (roughly unit RMS each for unit-normal ``x``)."""
    a = torch.atan(x)
    return torch.cat([a / 0.67, a * a / 0.6], dim=1)


def cppn_coordinates(h: int, w: int, device=None) -> torch.Tensor:
    """The CPPN input ``[1, 2, h, w]``: channel 0 is x (along the width), channel 1 is y, each a
    ``linspace(-sqrt(3), sqrt(3))`` (the uniform distribution on that interval has unit std)."""
    r = math.sqrt(3.0)
    y = torch.linspace(-r, r, h, device=device)
    x = torch.linspace(-r, r, w, device=device)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy])[None]


def cppn(
    size: int | tuple[int, int],
    batch: int = 1,
    num_output_channels: int = 3,
    num_hidden_channels: int = 24,
    num_layers: int = 8,
    normalize: bool = False,
    output_bias_sd: float = 0.0,
    device=None,
) -> tuple[list[torch.Tensor], ImageFn]:
    """Lucid's CPPN: ``[batch, num_output_channels, H, W]`` (``size``: ``H = W`` or ``(H, W)``) in (0, 1).

    The input is ``cppn_coordinates``; then ``num_layers`` 1x1 convolutions (weights N(0, 1 / fan_in), i.e.
    variance scaling; biases N(0, 0.1)), each optionally instance-normalised (``eps = 1e-6`` plus a learnt
    per-channel offset starting at 0, like ``slim.instance_norm``) and followed by ``composite_activation``
    (so hidden layers have ``2 * num_hidden_channels`` channels); last a 1x1 convolution with zero weights and
    a sigmoid.  No colour decorrelation.  Params are every weight and bias; ``image_fn`` is functional
    (``F.conv2d``), so any ``torch.optim`` optimiser works — Lucid recommends a learning rate of about 0.005
    (Adam) for CPPNs, far smaller than for FFT images.

    The output bias starts at 0 (``output_bias_sd=0``), so the initial image is exactly 0.5 everywhere;
    Lucid's ``arg_scope`` also draws that bias from N(0, 0.1) (``output_bias_sd=0.1``: a uniform but slightly
    tinted start).  As in Lucid, all batch elements share the weights and are identical images.
    """
    h, w = _hw(size)
    coords = cppn_coordinates(h, w, device=device)
    layers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    fan_in = 2
    for _ in range(num_layers):
        weight = torch.randn(num_hidden_channels, fan_in, 1, 1).to(device) * math.sqrt(1.0 / fan_in)
        bias = torch.randn(num_hidden_channels).to(device) * 0.1
        beta = torch.zeros(num_hidden_channels, device=device) if normalize else None
        layers.append((weight, bias, beta))
        fan_in = 2 * num_hidden_channels
    out_weight = torch.zeros(num_output_channels, fan_in, 1, 1, device=device)
    out_bias = torch.randn(num_output_channels).to(device) * output_bias_sd
    params = [t for layer in layers for t in layer if t is not None] + [out_weight, out_bias]
    for p in params:
        p.requires_grad_(True)

    def image_fn() -> torch.Tensor:
        net = coords
        for weight, bias, beta in layers:
            x = F.conv2d(net, weight, bias)
            if beta is not None:
                x = F.instance_norm(x, eps=1e-6) + beta[None, :, None, None]
            net = composite_activation(x)
        rgb = torch.sigmoid(F.conv2d(net, out_weight, out_bias))
        return rgb.repeat(batch, 1, 1, 1)

    return params, image_fn
