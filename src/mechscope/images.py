"""Images as tensors <-> PIL / PNG files; atomic saving; grids of a batch."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mechscope.artefacts import atomic_write_bytes


def to_pil(image: torch.Tensor) -> Image.Image:
    """``[3, H, W]`` (or ``[1, 3, H, W]``) in [0, 1] -> RGB ``PIL.Image``; 4 channels give RGBA."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"to_pil takes one image, got a batch of {image.shape[0]}; use grid() first")
        image = image[0]
    array = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def grid(images: torch.Tensor, ncols: int | None = None, pad: int = 2) -> torch.Tensor:
    """``[batch, 3, H, W]`` -> one ``[3, H', W']`` image laid out in a grid on a white background."""
    b, c, h, w = images.shape
    ncols = ncols or math.ceil(math.sqrt(b))
    nrows = math.ceil(b / ncols)
    out = torch.ones(c, nrows * (h + pad) - pad, ncols * (w + pad) - pad, dtype=images.dtype)
    for i in range(b):
        r, q = divmod(i, ncols)
        out[:, r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = images[i].detach().cpu()
    return out


def png_bytes(image: torch.Tensor) -> bytes:
    """PNG encoding of one image ``[3, H, W]`` or a batch (as a grid)."""
    if image.dim() == 4 and image.shape[0] > 1:
        image = grid(image)
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG")
    return buf.getvalue()


def save_png(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Save one image or a batch (as a grid) to a PNG file, atomically."""
    path = Path(path)
    atomic_write_bytes(path, png_bytes(image))
    return path
