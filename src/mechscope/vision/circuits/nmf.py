"""One-sided NMF of a unit's input weights, shown as RGB ("Visualizing Weights", Circuits thread).

``nmf_rgb(weights, n=3)``: the positive and negative parts of a unit's input weights ``[C_in, kh, kw]`` are
stacked along channels (``[relu(W); relu(-W)]``, ``2*C_in`` non-negative features per spatial position), and
scikit-learn's NMF finds ``n`` factors; each factor's spatial map becomes one colour channel.  ``nmf_factors``
does the same over a family of units with shared factors (e.g. 2 factors for high-low frequency detectors).
``factor_offset(maps, angle)`` is the centroid of each factor's spatial map along a direction: a high-low
detector's high-frequency factor should lie toward the high side.  Weights come from ``vision/weights.py`` (``unit_weights``, ``expanded_weights``).

Example::

    >>> import torch
    >>> from mechscope.vision.circuits.nmf import nmf_rgb
    >>> nmf_rgb(torch.randn(8, 5, 5)).image.shape
    torch.Size([3, 5, 5])
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mechscope.errors import MechscopeError


@dataclass(frozen=True)
class NMFResult:
    """One-sided NMF of input weights.

    ``factors``: spatial maps ``[n, kh, kw]`` (``[units, n, kh, kw]`` for a family); ``components``:
    ``[n, 2*C_in]``, each factor's loading on the positive (first ``C_in``) and negative (last ``C_in``) parts of
    the input channels; ``image``: the first three factors as RGB in ``[0, 1]`` (``[3, kh, kw]`` or
    ``[units, 3, kh, kw]``; zero channels where ``n < 3``; all factors share one scale); ``error``: sklearn's
    reconstruction error (Frobenius).
    """

    factors: torch.Tensor
    components: torch.Tensor
    image: torch.Tensor
    error: float

    def enlarged(self, scale: int = 16) -> torch.Tensor:
        """``image`` with each weight a ``scale x scale`` block (nearest neighbour), for display."""
        img = self.image if self.image.dim() == 4 else self.image[None]
        return img.repeat_interleave(scale, -2).repeat_interleave(scale, -1)

    def _repr_png_(self) -> bytes:
        from mechscope.images import png_bytes

        return png_bytes(self.enlarged())

    def save(self, path: str | os.PathLike, scale: int = 16) -> Path:
        """Save the RGB picture (a grid for a family) as a PNG, atomically."""
        from mechscope.images import save_png

        return save_png(self.enlarged(scale), path)


def _one_sided(w: torch.Tensor) -> torch.Tensor:
    """``[C_in, kh, kw]`` -> ``[kh*kw, 2*C_in]``: positions as samples, positive/negative parts as features."""
    if w.dim() != 3:
        raise MechscopeError(f"weights must be [C_in, kh, kw], got shape {tuple(w.shape)}")
    w = w.detach().double().cpu()
    return torch.cat([w.clamp(min=0), (-w).clamp(min=0)]).flatten(1).T


def _nmf(x: torch.Tensor, n: int, max_iter: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    from sklearn.decomposition import NMF

    if n < 1:
        raise MechscopeError(f"n must be a positive number of factors, not {n}")
    model = NMF(n_components=n, init="nndsvda", max_iter=max_iter, random_state=0)
    spatial = model.fit_transform(x.numpy())
    return torch.from_numpy(spatial), torch.from_numpy(model.components_), float(model.reconstruction_err_)


def _rgb(factors: torch.Tensor) -> torch.Tensor:
    """``[..., n, kh, kw]`` -> ``[..., 3, kh, kw]`` in [0, 1] (one shared scale)."""
    top = factors.max()
    img = factors / top if top > 0 else factors
    n = img.shape[-3]
    if n >= 3:
        return img[..., :3, :, :].float()
    pad = img.new_zeros(*img.shape[:-3], 3 - n, *img.shape[-2:])
    return torch.cat([img, pad], dim=-3).float()


def nmf_rgb(weights: torch.Tensor, n: int = 3, max_iter: int = 1000) -> NMFResult:
    """One-sided NMF of one unit's input weights ``[C_in, kh, kw]`` into ``n`` factors shown as RGB."""
    kh, kw = weights.shape[-2:]
    spatial, comps, err = _nmf(_one_sided(weights), n, max_iter)
    factors = spatial.T.reshape(n, kh, kw).float()
    return NMFResult(factors, comps.float(), _rgb(factors), err)


def nmf_factors(weights_list: Sequence[torch.Tensor], n: int = 2, max_iter: int = 1000) -> NMFResult:
    """Shared one-sided NMF factors of a family of units, each ``[C_in, kh, kw]`` (all the same shape).

    The units' positions are stacked as samples, so the ``n`` components (``[n, 2*C_in]``) are shared and each
    unit gets its own spatial maps: ``factors`` ``[units, n, kh, kw]``, ``image`` ``[units, 3, kh, kw]``.
    """
    if len(weights_list) == 0:
        raise MechscopeError("nmf_factors needs at least one unit's weights")
    shapes = {tuple(w.shape) for w in weights_list}
    if len(shapes) != 1:
        raise MechscopeError(f"all weights must have one shape [C_in, kh, kw], got {sorted(shapes)}")
    kh, kw = weights_list[0].shape[-2:]
    spatial, comps, err = _nmf(torch.cat([_one_sided(w) for w in weights_list]), n, max_iter)
    factors = spatial.reshape(len(weights_list), kh * kw, n).transpose(1, 2).reshape(-1, n, kh, kw).float()
    return NMFResult(factors, comps.float(), _rgb(factors), err)


def factor_offset(maps: torch.Tensor, angle_deg: float) -> torch.Tensor:
    """Centroid of each non-negative spatial map ``[..., kh, kw]`` along the direction ``angle_deg``
    (counter-clockwise from the +column axis, rows pointing down as in an image, so 90° is up), in pixels from
    the map's centre: ``[...]``.  An all-zero map has offset 0.

    >>> m = torch.zeros(1, 3, 3); m[0, 1, 2] = 1.0      # mass right of centre
    >>> factor_offset(m, 0.0).tolist(), factor_offset(m, 180.0).tolist()
    ([1.0], [-1.0])
    """

    m = torch.as_tensor(maps, dtype=torch.float64)
    if m.dim() < 2:
        raise MechscopeError(f"maps must be [..., kh, kw], got shape {tuple(m.shape)}")
    if (m < 0).any():
        raise MechscopeError("factor_offset takes non-negative maps (NMF factors)")
    kh, kw = m.shape[-2:]
    rows = torch.arange(kh, dtype=torch.float64) - (kh - 1) / 2
    cols = torch.arange(kw, dtype=torch.float64) - (kw - 1) / 2
    t = math.radians(angle_deg)
    proj = cols[None, :] * math.cos(t) - rows[:, None] * math.sin(t)
    mass = m.sum((-2, -1))
    return torch.where(mass > 0, (m * proj).sum((-2, -1)) / mass.clamp_min(1e-300), torch.zeros_like(mass))
