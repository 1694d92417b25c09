"""Transformation robustness: each factory returns a function ``[batch, C, H, W] -> [batch, C, H', W']``.

Lucid's ``standard_transforms`` are kept as data (``STANDARD_TRANSFORMS``): pad 12 with constant 0.5, jitter 8
(a random crop that shrinks the image), random scale 0.90..1.10 in steps of 0.02 (bilinear), random rotation
-10..10 degrees plus five extra 0 (26 choices, nearest neighbour, degrees converted with pi = 3.14 as Lucid
does), jitter 4.  The model sees whatever size the transforms produce: nothing is resized to 224.
``collapse_alpha_random`` composites an RGBA image onto random noise (Lucid's transparency recipe).

Example::

    >>> import torch
    >>> from mechscope.vision.featvis.transform import compose, standard_transforms
    >>> compose(standard_transforms())(torch.rand(1, 3, 128, 128)).shape[1]
    3
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor], torch.Tensor]


def _choice(values: Sequence[float]) -> float:
    return values[int(torch.randint(len(values), ()).item())]


def pad(width: int, mode: str = "constant", value: float = 0.5) -> Transform:
    """Pad every side by ``width`` pixels (``mode``: constant, reflect, replicate)."""

    def inner(x: torch.Tensor) -> torch.Tensor:
        kwargs = {"value": value} if mode == "constant" else {}
        return F.pad(x, (width, width, width, width), mode=mode, **kwargs)

    return inner


def jitter(d: int) -> Transform:
    """Random crop of ``(H - d) x (W - d)``: shifts by up to ``d`` pixels and shrinks the image by ``d``."""
    if d < 1:
        raise ValueError(f"jitter needs d >= 1, got {d}")

    def inner(x: torch.Tensor) -> torch.Tensor:
        dx, dy = (int(v) for v in torch.randint(d + 1, (2,)))
        return x[..., dy : dy + x.shape[-2] - d, dx : dx + x.shape[-1] - d]

    return inner


def random_scale(scales: Sequence[float]) -> Transform:
    """Resize by a factor drawn from ``scales`` (bilinear)."""

    def inner(x: torch.Tensor) -> torch.Tensor:
        s = _choice(scales)
        size = (max(1, round(x.shape[-2] * s)), max(1, round(x.shape[-1] * s)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    return inner


def random_rotate(angles: Sequence[float], units: str = "degrees") -> Transform:
    """Rotate about the centre by an angle drawn from ``angles`` (nearest neighbour, zeros outside).

    The rotation is rigid in pixels also for non-square images (``affine_grid`` works in coordinates normalised
    to [-1, 1] per axis, so the off-diagonal terms carry the aspect ratio).
    """
    to_rad = {"degrees": 3.14 / 180.0, "radians": 1.0}[units]

    def inner(x: torch.Tensor) -> torch.Tensor:
        a = _choice(angles) * to_rad
        if a == 0:
            return x
        cos, sin = math.cos(a), math.sin(a)
        aspect = x.shape[-2] / x.shape[-1]  # H / W
        theta = torch.tensor([[cos, -sin * aspect, 0.0], [sin / aspect, cos, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)

    return inner


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply ``transforms`` left to right."""

    def inner(x: torch.Tensor) -> torch.Tensor:
        for t in transforms:
            x = t(x)
        return x

    return inner


def collapse_alpha_random(sd: float = 0.5) -> Transform:
    """Composite RGBA ``[b, 4, H, W]`` (values in [0, 1]) onto a fresh random background: RGB ``[b, 3, H, W]``
    ``= rgb * a + bg * (1 - a)``.

    As Lucid's ``collapse_alpha``: on every call each batch element gets its own background, a random natural
    looking image made like ``param.image``'s start but with spectrum N(0, sd) (1/f-scaled FFT noise, Lucid's
    colour decorrelation, sigmoid), so it lies in (0, 1) and carries no gradient.  Transparent pixels therefore
    show unpredictable content, and the optimiser learns to keep opaque only what the objective needs.
    """
    from mechscope.vision.featvis.param import fft_image, to_valid_rgb

    def inner(x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 4:
            raise ValueError(f"collapse_alpha_random needs [batch, 4, H, W], got {tuple(x.shape)}")
        rgb, a = x[:, :3], x[:, 3:4]
        with torch.no_grad():
            _, noise = fft_image((x.shape[0], 3, *x.shape[-2:]), sd=sd, device=x.device)
            bg = to_valid_rgb(noise)().to(x.dtype)
        return rgb * a + bg * (1 - a)

    return inner


# Lucid's standard_transforms, as data: (factory, argument)
STANDARD_TRANSFORMS: tuple[tuple[Callable[..., Transform], object], ...] = (
    (pad, 12),
    (jitter, 8),
    (random_scale, tuple(1 + (i - 5) / 50.0 for i in range(11))),
    (random_rotate, tuple(list(range(-10, 11)) + 5 * [0])),
    (jitter, 4),
)


def standard_transforms() -> list[Transform]:
    """Lucid's default list of transforms, freshly built."""
    return [factory(arg) for factory, arg in STANDARD_TRANSFORMS]


__all__ = [
    "Transform",
    "pad",
    "jitter",
    "random_scale",
    "random_rotate",
    "compose",
    "standard_transforms",
    "collapse_alpha_random",
]
