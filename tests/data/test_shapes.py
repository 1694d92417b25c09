import math

import pytest
import torch

from mechscope.data import draw
from mechscope.data.shapes import (CURVE_CLASSES, CURVE_ORIENTATIONS, IGNORE, KINDS, SHAPE_CLASSES, TASKS,
                                   ShapesDataset, WorldConfig, generate)
from mechscope.errors import MechscopeError


def test_items_are_functions_of_seed_and_index_not_of_the_batch():
    ds = ShapesDataset(64, seed=3)
    whole, labels = ds.sample(range(10))
    parts = torch.cat([ds.sample([i])[0] for i in (0, 1, 2)])
    assert torch.equal(whole[:3], parts)
    assert torch.equal(ds.sample([7, 2])[0][0], whole[7])
    other, _ = ShapesDataset(64, seed=4).sample(range(10))
    assert not torch.equal(whole, other)


def test_images_in_range_and_labels_consistent_with_kind():
    images, labels = generate(range(400), seed=0)
    assert images.shape == (400, 3, 64, 64) and images.dtype == torch.float32
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    kind = labels["kind"]
    assert set(kind.tolist()) == {0, 1, 2}
    shape, curve, boundary, colour = (labels[t] for t in ("shape", "curve", "boundary", "colour"))
    assert ((shape != IGNORE) == (kind == KINDS.index("shape"))).all()
    assert ((curve != IGNORE) == (kind == KINDS.index("curve"))).all()
    assert ((boundary != 0) == (kind == KINDS.index("boundary"))).all()
    assert ((colour == IGNORE) == (kind == KINDS.index("boundary"))).all()
    assert set(shape[shape != IGNORE].tolist()) == set(range(len(SHAPE_CLASSES)))
    assert int(curve.max()) < CURVE_CLASSES and int(boundary.max()) < TASKS["boundary"]
    # every curvature kind occurs: gentle (0-15), sharp (16-31), straight (32-39)
    c = curve[curve != IGNORE]
    assert ((c < 16).any(), ((c >= 16) & (c < 32)).any(), (c >= 32).any()) == (True, True, True)


def test_colour_label_matches_the_pixels_of_the_curve():
    """Where the stroke through the centre is drawn, coloured strokes have unequal RGB channels."""
    images, labels = generate(range(300), seed=1, config=WorldConfig(pixel_noise=0.0))
    curve = labels["kind"] == KINDS.index("curve")
    spread = (images.max(1).values - images.min(1).values)          # [B, H, W] channel spread
    centre = spread[:, 28:36, 28:36].amax((1, 2))
    assert float(centre[curve & (labels["colour"] == 1)].median()) > 0.15
    # grey strokes on faintly tinted backgrounds: the spread stays small
    assert float(centre[curve & (labels["colour"] == 0)].median()) < 0.15


def test_curve_orientation_label_matches_the_drawn_arc():
    """For gentle and sharp curves the centre of curvature lies in the labelled direction: a least-squares
    circle fitted to the stroke's pixels has its centre within a bin (plus the 2-px jitter) of the label."""
    cfg = WorldConfig(kind_probs=(0, 1, 0), distractor_prob=0.0, pixel_noise=0.0, straight_prob=0.0,
                      backgrounds=("flat",))
    images, labels = generate(range(60), seed=2, config=cfg)
    ys, xs = torch.meshgrid(torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="ij")
    diffs = []
    for img, lab in zip(images, labels["curve"].tolist(), strict=True):
        ink = (img - img[:, 0, 0][:, None, None]).abs().sum(0) > 0.3
        x, y = xs[ink].double() - 32, -(ys[ink].double() - 32)           # y up
        a = torch.stack([x, y, torch.ones_like(x)], 1)
        sol = torch.linalg.lstsq(a, -(x * x + y * y)[:, None]).solution[:, 0]
        cx, cy = -sol[0] / 2, -sol[1] / 2
        toward = math.degrees(math.atan2(float(cy), float(cx))) % 360
        target = (lab % CURVE_ORIENTATIONS) * 360 / CURVE_ORIENTATIONS
        diff = abs((toward - target + 180) % 360 - 180)
        # bin half-width 11.25 deg + the crossing point's 2-px jitter (up to 30 deg at a 5-px radius)
        assert diff < 42, (lab, toward)
        diffs.append(diff)
    assert sorted(diffs)[len(diffs) // 2] < 11.25


def test_batches_follow_the_image_folder_protocol():
    ds = ShapesDataset(10, size=32, seed=0)
    got = list(ds.batches(4, start=2))
    assert [idx for idx, _ in got] == [[2, 3, 4, 5], [6, 7, 8, 9]]
    assert got[0][1].shape == (4, 3, 32, 32) and ds.skipped == [] and len(ds) == 10
    labelled = next(ds.labelled_batches(3))
    assert set(labelled[2]) == {"kind", *TASKS}


def test_bad_arguments_are_refused():
    with pytest.raises(MechscopeError, match="n >= 1"):
        ShapesDataset(0)
    with pytest.raises(MechscopeError, match="size"):
        ShapesDataset(4, size=8)
    with pytest.raises(MechscopeError, match="out of range"):
        ShapesDataset(4).sample([4])


def test_anti_aliased_coverage_and_polygon_inside():
    px, py = draw.pixel_grid(16)
    one = torch.ones(1)
    disc = draw.fill(draw.circle_sdf(px, py, 8 * one, 8 * one, 4 * one))
    assert float(disc[0, 8, 8]) == 1.0 and float(disc[0, 0, 0]) == 0.0
    assert 0 < float(disc[0, 10, 11]) < 1                      # the rim is partly covered
    assert abs(float(disc.sum()) - math.pi * 16) < 1.5          # area of the disc
    vx, vy = draw.regular_polygon(8 * one, 8 * one, 6 * one, 4 * one, 0.25 * math.pi * one, 6)
    square = draw.fill(draw.polygon_sdf(px, py, vx, vy))
    assert abs(float(square.sum()) - 72.0) < 1.5               # a square of diagonal 12 has area 72
