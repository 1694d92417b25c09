"""Any folder of images as a dataset: recursive, deterministic order, robust to broken files.

``ImageFolder(root, size)`` lists every file under ``root`` (recursively) whose extension is ``.jpg``, ``.jpeg``,
``.png`` or ``.webp`` (any case), sorted by path relative to ``root``.  Item *i* is the file ``paths[i]``: its
index never changes, whichever files turn out to be unreadable, so an index is a stable bookmark for resuming a
long scan (``batches(..., start=i)``).

Each image becomes a float tensor ``[3, size, size]`` in ``[0, 1]``: RGBA, greyscale and palette images are
converted to RGB (transparent pixels are composited onto white), photos are turned upright by their EXIF
orientation tag, the short side is resized to ``size`` (bilinear, PIL) and the centre ``size x size`` square is
cropped.  JPEGs much larger than ``size`` are decoded at a reduced scale (PIL's ``draft``: 1/2, 1/4 or 1/8,
never below ``size``) before the resize, which saves most of their decoding time.

Files that cannot be decoded (corrupt or truncated bytes, a text file named ``.png``) are skipped during a scan
and recorded in ``skipped`` as ``(path, reason)``; a scan never stops for them.

Example::

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> from mechscope.data.folders import ImageFolder
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (40, 30), "red").save(root / "a.png")
    >>> (root / "sub").mkdir(); Image.new("L", (30, 50)).save(root / "sub" / "b.JPG")
    >>> _ = (root / "broken.png").write_bytes(b"not an image")
    >>> folder = ImageFolder(root, size=16)
    >>> [p.name for p in folder.paths]
    ['a.png', 'broken.png', 'b.JPG']
    >>> [(idx, images.shape) for idx, images in folder.batches(2)]
    [([0, 2], torch.Size([2, 3, 16, 16]))]
    >>> [(p.name, reason.split(":")[0]) for p, reason in folder.skipped]
    [('broken.png', 'UnidentifiedImageError')]
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from mechscope.errors import MechscopeError

EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp")
"""File extensions that ``ImageFolder`` reads (compared case-insensitively)."""


def load_image(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Read one image file as ``[3, size, size]`` float in ``[0, 1]`` (RGB, short side resized, centre crop).

    Raises whatever PIL raises for a file it cannot decode (``ImageFolder`` catches and records it).
    """
    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("RGB", (size, size))  # decode at 1/2, 1/4 or 1/8 scale when that stays >= size
        img.load()
        rgb = _to_rgb(_upright(img))
    return _resize_crop(rgb, size)


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (photos from phones), leaving the image as it is if the tag is broken."""
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - a malformed EXIF block must not lose the picture
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; images with transparency are composited onto white."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: scale to 8 bits rather than clip
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(array.max()), 1.0)
        img = Image.fromarray(np.clip(array / top * 255.0, 0, 255).round().astype(np.uint8))  # mode L
    return img.convert("RGB")


def _resize_crop(img: Image.Image, size: int) -> torch.Tensor:
    """Resize the short side to ``size`` (bilinear) and crop the centre square -> ``[3, size, size]``."""
    w, h = img.size
    if w <= h:
        new_w, new_h = size, max(size, round(h * size / w))
    else:
        new_w, new_h = max(size, round(w * size / h)), size
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    array = np.array(img, dtype=np.uint8)  # a writable copy: [size, size, 3]
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def list_images(root: str | os.PathLike, extensions: tuple[str, ...] = EXTENSIONS) -> list[Path]:
    """Every file under ``root`` (recursively) with one of ``extensions`` (any case), sorted by relative path."""
    root = Path(root)
    wanted = tuple(e.lower() for e in extensions)
    found = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.lower().endswith(wanted):
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


class ImageFolder:
    """The images under a folder, each as ``[3, size, size]`` float in ``[0, 1]``.

    Args:
        root: the folder; searched recursively.
        size: side of the square images produced (short side resized to ``size``, then centre crop).
        extensions: file extensions to read, compared case-insensitively (default ``EXTENSIONS``).

    Attributes:
        paths: the candidate files, sorted; item *i* is ``paths[i]``.
        skipped: ``(path, reason)`` for every file the latest scan could not decode (reset when a scan starts).

    Raises ``MechscopeError`` when ``root`` is not a folder or holds no file with one of the extensions.
    """

    def __init__(self, root: str | os.PathLike, size: int, *, extensions: tuple[str, ...] = EXTENSIONS) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise MechscopeError(f"ImageFolder size must be a positive int (pixels), got {size!r}")
        self.root = Path(root)
        self.size = size
        self.extensions = tuple(extensions)
        looked_for = " ".join(self.extensions)
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise MechscopeError(f"image folder {str(self.root)!r} {what}; give a folder holding {looked_for} files")
        self.paths: list[Path] = list_images(self.root, self.extensions)
        if not self.paths:
            raise MechscopeError(
                f"image folder {str(self.root)!r} holds no images: no file (searched recursively) ends in "
                f"{looked_for} (any case)"
            )
        self.skipped: list[tuple[Path, str]] = []

    def __len__(self) -> int:
        """The number of candidate files (unreadable ones included; they are found out when read)."""
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, size={self.size}, files={len(self.paths)})"

    def __getitem__(self, index: int) -> torch.Tensor:
        """Image ``index`` as ``[3, size, size]``; raises ``MechscopeError`` (with the reason) if unreadable."""
        path = self.paths[index]
        try:
            return load_image(path, self.size)
        except Exception as e:  # noqa: BLE001 - any decoder failure is reported the same way
            raise MechscopeError(f"cannot read image {str(path)!r}: {_reason(e)}") from e

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        """``(index, image)`` for every readable file, in order; unreadable files go to ``skipped``."""
        return self.scan()

    def scan(self, start: int = 0, *, workers: int = 0) -> Iterator[tuple[int, torch.Tensor]]:
        """``(index, image [3, size, size])`` for the readable files from index ``start`` on, in order.

        ``workers > 0`` decodes that many files at once in threads (PIL releases the GIL while decoding);
        the order of the results is the same.  ``skipped`` is reset when the scan starts.
        """
        if not 0 <= start <= len(self.paths):
            raise MechscopeError(f"start index {start} is out of range: valid 0..{len(self.paths)}")
        self.skipped = []
        indices = range(start, len(self.paths))
        if workers > 0:
            results = _ordered_map(self._try_load, indices, workers)
        else:
            results = map(self._try_load, indices)
        for index, image, reason in results:
            if image is None:
                self.skipped.append((self.paths[index], reason))
            else:
                yield index, image

    def batches(
        self, batch_size: int, start: int = 0, *, workers: int = 0
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """``(indices, images [B, 3, size, size])`` with ``B == batch_size`` except perhaps the last batch.

        ``indices`` are the files' indices in ``paths`` (unreadable files are skipped, so they need not be
        consecutive).  To resume an interrupted scan, pass ``start = last index seen + 1``.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise MechscopeError(f"batch_size must be a positive int, got {batch_size!r}")
        indices: list[int] = []
        images: list[torch.Tensor] = []
        for index, image in self.scan(start, workers=workers):
            indices.append(index)
            images.append(image)
            if len(images) == batch_size:
                yield indices, torch.stack(images)
                indices, images = [], []
        if images:
            yield indices, torch.stack(images)

    def _try_load(self, index: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            return index, load_image(self.paths[index], self.size), ""
        except Exception as e:  # noqa: BLE001 - a long scan must survive any broken file
            return index, None, _reason(e)


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _ordered_map(fn, items, workers: int) -> Iterator:
    """``map(fn, items)`` run on ``workers`` threads with a bounded look-ahead, results in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 4 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
