"""The shipped organism: loads offline, matches its card, keeps its accuracy and its curve detectors."""

import pytest
import torch

import mechscope
from mechscope.data.shapes import ShapesDataset
from mechscope.vision.families.tuning import curve_detectors, radial_tuning_curve
from mechscope.zoo.organisms.shapes_recipe import HELD_OUT_OFFSET, evaluate
from mechscope.zoo.registry import bundled_card, get_card


@pytest.fixture(scope="module")
def organism():
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return mechscope.load("shapes", device="cpu")


def test_card_states_recipe_accuracy_and_the_bundled_hash():
    card = bundled_card("shapes")
    assert card["sha256"] == get_card("shapes").bundled_sha256
    assert card["accuracy"]["shape"] >= 0.90
    assert card["recipe"]["seed"] == 0 and card["images_seen"] > 0
    assert card["curve_detector_census"]["mixed3b"]["coverage_of_8_sectors"] >= 7


def test_accuracy_on_a_freshly_generated_held_out_set(organism):
    seed = bundled_card("shapes")["recipe"]["seed"] + HELD_OUT_OFFSET + 2     # never seen, not the card's set
    acc = evaluate(organism, ShapesDataset(n=400, seed=seed))
    assert acc["shape"] >= 0.85
    stated = bundled_card("shapes")["accuracy"]
    for task in ("curve", "boundary", "colour"):
        assert acc[task] >= stated[task] - 0.08, (task, acc[task], stated[task])


def test_mixed3b_holds_a_rotation_family_of_curve_detectors(organism):
    tuning = radial_tuning_curve(organism, "mixed3b", n_orientations=72, progress=False)
    found = curve_detectors(tuning)
    assert len(found.units) >= 20
    assert found.coverage(8) >= 7


def test_the_seed_1_organism_matches_its_card_and_also_has_curve_detectors():
    card = bundled_card("shapes-seed1")
    assert card["recipe"]["seed"] == 1 and card["sha256"] == get_card("shapes-seed1").bundled_sha256
    net = mechscope.load("shapes-seed1", device="cpu")
    acc = evaluate(net, ShapesDataset(n=300, seed=1 + HELD_OUT_OFFSET + 2))
    assert acc["shape"] >= 0.85
    found = curve_detectors(radial_tuning_curve(net, "mixed3b", n_orientations=72, progress=False))
    assert len(found.units) >= 20 and found.coverage(8) >= 7
