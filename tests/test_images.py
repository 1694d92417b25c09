"""Images: tensor <-> PIL, grids of a batch, PNG bytes, atomic PNG saving."""

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from mechscope.images import grid, png_bytes, save_png, to_pil


def _known_image(h=4, w=6):
    """A [3, h, w] tensor whose values are exact multiples of 1/255, with the uint8 array it must become."""
    levels = torch.arange(3 * h * w, dtype=torch.int64).reshape(3, h, w) * 7 % 256
    return levels.float() / 255.0, levels.permute(1, 2, 0).numpy().astype(np.uint8)


def _pixels(pil):
    return np.asarray(pil.convert("RGB"))


# --- to_pil --------------------------------------------------------------------------------------------------


def test_to_pil_round_trip_known_values():
    t, expected = _known_image()
    pil = to_pil(t)
    assert pil.mode == "RGB"
    assert pil.size == (6, 4)  # PIL: (width, height)
    assert np.array_equal(_pixels(pil), expected)
    back = torch.from_numpy(_pixels(pil).copy()).permute(2, 0, 1).float() / 255
    assert torch.allclose(back, t, atol=1e-6)


def test_to_pil_corner_values_and_channel_order():
    t = torch.zeros(3, 2, 2)
    t[0, 0, 0] = 1.0  # red at top-left
    t[1, 0, 1] = 1.0  # green at top-right
    t[2, 1, 0] = 1.0  # blue at bottom-left
    t[:, 1, 1] = 1.0  # white at bottom-right
    pil = to_pil(t)
    assert pil.getpixel((0, 0)) == (255, 0, 0)
    assert pil.getpixel((1, 0)) == (0, 255, 0)
    assert pil.getpixel((0, 1)) == (0, 0, 255)
    assert pil.getpixel((1, 1)) == (255, 255, 255)


def test_to_pil_accepts_batch_of_one_and_grad_tensors():
    t, expected = _known_image()
    assert np.array_equal(_pixels(to_pil(t[None])), expected)
    assert np.array_equal(_pixels(to_pil(t.clone().requires_grad_(True))), expected)
    assert np.array_equal(_pixels(to_pil(t.double())), expected)


def test_to_pil_clamps_out_of_range():
    t = torch.tensor([-1.0, 0.5 + 0.5 / 255, 2.0]).reshape(3, 1, 1)
    assert to_pil(t).getpixel((0, 0)) == (0, 128, 255)


def test_to_pil_rejects_batches():
    with pytest.raises(ValueError, match="grid"):
        to_pil(torch.rand(2, 3, 4, 4))


# --- grid ----------------------------------------------------------------------------------------------------


def test_grid_layout_batch_5_ncols_3_pad_2():
    b, h, w, pad = 5, 4, 6, 2
    batch = torch.rand(b, 3, h, w) * 0.5  # never 1.0, so the white background is distinguishable
    g = grid(batch, ncols=3, pad=pad)
    # 2 rows x 3 columns: H' = 2h + pad, W' = 3w + 2 pad
    assert g.shape == (3, 2 * h + pad, 3 * w + 2 * pad)
    assert g.shape == (3, 10, 22)
    for i in range(b):
        r, c = divmod(i, 3)
        top, left = r * (h + pad), c * (w + pad)
        assert torch.equal(g[:, top : top + h, left : left + w], batch[i])
    background = torch.ones(g.shape[1:], dtype=torch.bool)
    for i in range(b):
        r, c = divmod(i, 3)
        background[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = False
    assert torch.all(g[:, background] == 1.0)  # gaps and the empty sixth cell are white
    assert torch.all(g[:, h + pad :, 2 * (w + pad) :] == 1.0)  # the empty cell itself


def test_grid_default_is_square_ish():
    g = grid(torch.zeros(5, 3, 8, 8))  # ceil(sqrt(5)) = 3 columns, 2 rows, pad 2
    assert g.shape == (3, 2 * 8 + 2, 3 * 8 + 2 * 2)
    g = grid(torch.zeros(4, 3, 8, 8), pad=0)
    assert g.shape == (3, 16, 16)
    assert torch.all(g == 0)


def test_grid_single_column():
    batch = torch.rand(3, 3, 2, 5) * 0.5
    g = grid(batch, ncols=1, pad=1)
    assert g.shape == (3, 3 * 2 + 2, 5)
    assert torch.equal(g[:, 3:5], batch[1])
    assert torch.all(g[:, 2] == 1.0) and torch.all(g[:, 5] == 1.0)


# --- PNG bytes -----------------------------------------------------------------------------------------------


def test_png_bytes_decode_to_same_pixels():
    t, expected = _known_image()
    data = png_bytes(t)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        assert np.array_equal(_pixels(im), expected)


def test_png_bytes_batch_is_grid():
    batch = torch.rand(5, 3, 4, 6)
    with Image.open(io.BytesIO(png_bytes(batch))) as im:
        assert im.size == (3 * 6 + 2 * 2, 2 * 4 + 2)  # default grid: 3 columns, 2 rows, pad 2
        expected = (grid(batch).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        assert np.array_equal(_pixels(im), expected)


# --- save_png ------------------------------------------------------------------------------------------------


def test_save_png_writes_file_and_no_part_files(tmp_path):
    folder = tmp_path / "nested" / "out"  # created on demand
    t, expected = _known_image()
    path = save_png(t, folder / "img.png")
    assert path == folder / "img.png"
    assert sorted(os.listdir(folder)) == ["img.png"]
    with Image.open(path) as im:
        assert np.array_equal(_pixels(im), expected)
    # overwrite in place: still a single file, with the new content
    save_png(torch.zeros(3, 4, 6), str(folder / "img.png"))
    assert sorted(os.listdir(folder)) == ["img.png"]
    with Image.open(path) as im:
        assert np.array_equal(_pixels(im), np.zeros((4, 6, 3), dtype=np.uint8))
    assert not any(name.endswith(".part") for name in os.listdir(folder))


def test_save_png_batch_as_grid(tmp_path):
    path = save_png(torch.rand(5, 3, 4, 6), tmp_path / "grid.png")
    with Image.open(path) as im:
        assert im.size == (22, 10)


def test_save_png_is_atomic_on_failure(tmp_path, monkeypatch):
    """If the final rename fails, the old file is untouched and the temporary file is removed."""
    folder = tmp_path / "atomic"
    target = folder / "img.png"
    save_png(torch.zeros(3, 2, 2), target)
    old = target.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    import mechscope.zoo.weights as weights

    monkeypatch.setattr(weights.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_png(torch.ones(3, 2, 2), target)
    monkeypatch.undo()
    assert target.read_bytes() == old
    assert os.listdir(folder) == ["img.png"]

