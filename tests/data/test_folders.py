import io

import numpy as np
import pytest
import torch
from PIL import Image

from mechscope.data.folders import ImageFolder, load_image
from mechscope.errors import MechscopeError


def _save(path, mode="RGB", size=(24, 24), color="red", fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt)
    return path


def _png_bytes(size=(64, 64)):
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_recursive_extension_filter_and_sorted_order(tmp_path):
    _save(tmp_path / "b.png")
    _save(tmp_path / "a" / "z.JPEG", fmt="JPEG")
    _save(tmp_path / "a" / "deep" / "c.webp", fmt="WEBP")
    _save(tmp_path / "A.Jpg", fmt="JPEG")
    _save(tmp_path / "x.gif", fmt="GIF")  # not an extension we read
    (tmp_path / "notes.txt").write_text("hello")
    folder = ImageFolder(tmp_path, size=8)
    rel = [p.relative_to(tmp_path).as_posix() for p in folder.paths]
    assert rel == ["A.Jpg", "a/deep/c.webp", "a/z.JPEG", "b.png"]
    assert len(folder) == 4
    assert ImageFolder(tmp_path, size=8).paths == folder.paths  # deterministic
    indices = [i for i, _ in folder]
    assert indices == [0, 1, 2, 3] and folder.skipped == []


def test_corrupt_files_are_skipped_and_counted(tmp_path):
    _save(tmp_path / "0_good.png")
    (tmp_path / "1_garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (tmp_path / "2_truncated.png").write_bytes(_png_bytes()[:300])
    (tmp_path / "3_text.jpg").write_text("this is not a jpeg\n")
    _save(tmp_path / "4_good.jpg", fmt="JPEG")
    (tmp_path / "5_empty.webp").write_bytes(b"")
    folder = ImageFolder(tmp_path, size=8)
    out = list(folder.batches(4))
    assert [idx for idx, _ in out] == [[0, 4]]
    assert out[0][1].shape == (2, 3, 8, 8)
    skipped = sorted(p.name for p, _ in folder.skipped)
    assert skipped == ["1_garbage.png", "2_truncated.png", "3_text.jpg", "5_empty.webp"]
    assert all(reason for _, reason in folder.skipped)
    # a new scan resets the record rather than adding to it
    list(folder)
    assert len(folder.skipped) == 4
    with pytest.raises(MechscopeError, match="3_text.jpg"):
        folder[3]


def test_modes_become_rgb(tmp_path):
    _save(tmp_path / "grey.png", mode="L", color=128)
    _save(tmp_path / "rgba.png", mode="RGBA", color=(255, 0, 0, 0))  # fully transparent -> white
    _save(tmp_path / "rgba_opaque.png", mode="RGBA", color=(0, 0, 255, 255))
    pal = Image.new("RGB", (24, 24), (0, 255, 0)).convert("P", palette=Image.Palette.ADAPTIVE)
    pal.save(tmp_path / "pal.png")
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(tmp_path / "grey16.png")  # scaled, not clipped
    folder = ImageFolder(tmp_path, size=8)
    images = {folder.paths[i].stem: img for i, img in folder}
    assert all(img.shape == (3, 8, 8) and img.dtype == torch.float32 for img in images.values())
    assert torch.allclose(images["grey"], torch.full((3, 8, 8), 128 / 255))
    assert torch.allclose(images["rgba"], torch.ones(3, 8, 8))
    assert torch.allclose(images["grey16"], torch.full((3, 8, 8), 128 / 255))
    assert torch.allclose(images["rgba_opaque"], torch.tensor([0.0, 0.0, 1.0])[:, None, None].expand(3, 8, 8))
    assert torch.allclose(images["pal"], torch.tensor([0.0, 1.0, 0.0])[:, None, None].expand(3, 8, 8))


def test_resize_short_side_and_centre_crop(tmp_path):
    # 60 x 20 (w x h): the short side is already 20, so the crop keeps columns 20..39 only
    array = np.zeros((20, 60, 3), dtype=np.uint8)
    array[:, :20] = (0, 255, 0)
    array[:, 20:40] = (255, 0, 0)
    array[:, 40:] = (0, 0, 255)
    Image.fromarray(array).save(tmp_path / "wide.png")
    img = load_image(tmp_path / "wide.png", 20)
    assert img.shape == (3, 20, 20)
    assert torch.equal(img, torch.tensor([1.0, 0.0, 0.0])[:, None, None].expand(3, 20, 20))
    # tall 30 x 90 -> resized to 10 x 30, centre crop 10 x 10; values stay in [0, 1]
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 30, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    tall = load_image(tmp_path / "t.png", 10)
    assert tall.shape == (3, 10, 10) and 0 <= tall.min() and tall.max() <= 1
    # upscaling a small image works too
    assert load_image(_save(tmp_path / "small.png", size=(4, 6)), 16).shape == (3, 16, 16)


def test_batches_with_start_index_and_workers(tmp_path):
    for i in range(7):
        _save(tmp_path / f"{i}.png", color=(i * 30, 0, 0))
    (tmp_path / "3.png").write_bytes(b"broken")
    folder = ImageFolder(tmp_path, size=4)
    assert [idx for idx, _ in folder.batches(2)] == [[0, 1], [2, 4], [5, 6]]
    resumed = list(folder.batches(2, start=4))
    assert [idx for idx, _ in resumed] == [[4, 5], [6]]
    assert resumed[1][1].shape == (1, 3, 4, 4)
    assert torch.allclose(resumed[0][1][:, 0, 0, 0], torch.tensor([120 / 255, 150 / 255]))
    assert folder.skipped == []  # the broken file lies before the start
    threaded = list(folder.batches(3, workers=2))
    plain = list(folder.batches(3))
    assert [i for i, _ in threaded] == [i for i, _ in plain] == [[0, 1, 2], [4, 5, 6]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(threaded, plain))
    assert [p.name for p, _ in folder.skipped] == ["3.png"]
    assert list(folder.batches(2, start=7)) == []
    with pytest.raises(MechscopeError, match="valid 0..7"):
        list(folder.batches(2, start=8))


def test_missing_or_empty_folder_names_folder_and_extensions(tmp_path):
    with pytest.raises(MechscopeError, match=r"does not exist.*\.jpg"):
        ImageFolder(tmp_path / "nope", size=8)
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(MechscopeError, match=r"no images.*\.jpg \.jpeg \.png \.webp") as info:
        ImageFolder(tmp_path, size=8)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(MechscopeError, match="not a folder"):
        ImageFolder(tmp_path / "readme.txt", size=8)
    with pytest.raises(MechscopeError, match="positive int"):
        ImageFolder(tmp_path, size=0)


def test_exif_orientation_and_large_jpeg(tmp_path):
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:] = (0, 0, 255)
    img = Image.fromarray(array)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path / "phone.jpg", 10)  # displayed 20 x 40: red on top, blue below
    assert upright[0, 0].mean() > 0.8 and upright[2, 0].mean() < 0.2
    assert upright[2, -1].mean() > 0.8 and upright[0, -1].mean() < 0.2
    # a JPEG 16x larger than asked for decodes at reduced scale and still gives the exact size and colour
    Image.new("RGB", (640, 480), (0, 200, 0)).save(tmp_path / "big.jpg", quality=95)
    big = load_image(tmp_path / "big.jpg", 30)
    assert big.shape == (3, 30, 30)
    assert torch.allclose(big, torch.tensor([0.0, 200 / 255, 0.0])[:, None, None].expand(3, 30, 30), atol=0.03)
