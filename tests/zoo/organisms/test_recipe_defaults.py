"""Every bundled organism's card records the recipe that made it; the recipe objects' defaults (with only what the
registry's reproduction command states: a seed, a layer count, a variant, an architecture) must equal it, so that
running the recipe reproduces what shipped.  Field by field, for every field the card records (threads included)."""

import json
from dataclasses import asdict

import pytest

from mechscope.reproduce.polysemantic_sae import NAME as SAE_NAME, SAERecipe
from mechscope.zoo.organisms.attn_only_recipe import AttnOnlyRecipe
from mechscope.zoo.organisms.banding_recipe import BandingRecipe
from mechscope.zoo.organisms.branched_recipe import BranchedRecipe
from mechscope.zoo.organisms.shapes_recipe import ShapesRecipe, architecture_recipe
from mechscope.zoo.registry import bundle_dir, bundled_card, cards


def _plain(value):
    """JSON's view of a value (tuples become lists), as the card stores it."""
    return json.loads(json.dumps(value))


def _shapes_like(recipe) -> dict:
    """What ``train_shapes`` / ``train_branched`` write as ``card["recipe"]``: the world with the recipe's size."""
    world = {**recipe.world.as_dict(), "size": recipe.size}
    return _plain({**asdict(recipe), "world": world})


def _expected(name: str) -> dict:
    """The recipe the reproduction command of ``name`` runs, as the card would record it."""
    if name in ("shapes", "shapes-seed1"):
        return _shapes_like(ShapesRecipe(seed=1 if name == "shapes-seed1" else 0))
    if name in ("shapes-vgg", "shapes-resnet"):
        return _shapes_like(architecture_recipe(name.removeprefix("shapes-")))
    if name.startswith("attn-only-"):
        return _plain(asdict(AttnOnlyRecipe(n_layers=int(name.removeprefix("attn-only-").removesuffix("l")))))
    if name == "mlp-1l":
        from mechscope.zoo.organisms.attn_only_recipe import mlp_recipe

        return _plain(asdict(mlp_recipe()))
    if name.startswith("banding-"):
        return _plain({"variant": name.removeprefix("banding-"), **asdict(BandingRecipe())})
    if name.startswith("branched-"):
        return _shapes_like(BranchedRecipe(groups=int(name.removeprefix("branched-"))))
    if name == "shapes-clip-shuffled":
        from mechscope.zoo.organisms.shapes_clip_recipe import ShapesClipRecipe

        return _plain(asdict(ShapesClipRecipe(shuffle_captions=True)))
    if name == "shapes-clip":
        from mechscope.zoo.organisms.shapes_clip_recipe import ShapesClipRecipe

        return _plain(asdict(ShapesClipRecipe()))
    raise AssertionError(f"no recipe known for the bundled organism {name}: add it to this test")


# fields a recipe gained after a card was written; the value here is what the older run used (the code path it
# took), so the card is still reproduced by the default
ADDED_LATER = {"architecture": "inception", "shuffle_captions": False, "d_mlp": None, "tokenizer_from": None,
               "variant": None}
# fields that decide only what a run records, never its weights (probes run under no_grad on their own generator):
# a card written before them is reproduced whatever their value
RECORDING_ONLY = {"log_probes"}

BUNDLED = [card.name for card in cards() if card.bundled is not None]


def test_every_bundled_organism_is_covered():
    assert len(BUNDLED) == 16 and "shapes" in BUNDLED and "attn-only-2l" in BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_card_recipe_equals_the_recipe_defaults(name):
    recorded, expected = bundled_card(name)["recipe"], _expected(name)
    for field, value in expected.items():
        if field not in recorded and field in RECORDING_ONLY:
            continue
        if field not in recorded:
            assert ADDED_LATER.get(field) == value, f"{name}: the card does not record {field}"
            continue
        assert recorded[field] == value, f"{name}: card {field}={recorded[field]!r}, recipe default {value!r}"
    assert set(recorded) <= set(expected), f"{name}: card fields the recipe lacks: {set(recorded) - set(expected)}"
    assert recorded["threads"] == 1 == bundled_card(name)["machine"]["threads"]


def test_sae_card_recipe_equals_the_recipe_defaults():
    card = json.loads((bundle_dir() / f"{SAE_NAME}.json").read_text())
    recorded = {**card["recipe"], "threads": card["threads"]}   # the card kept threads beside its recipe
    assert recorded == _plain(asdict(SAERecipe()))
    assert card["retrain"] == "mechscope train shapes-sae"


def test_the_default_recipes_run_at_one_thread():
    """The issue's case: the cards say 1 thread, the code defaulted to 2."""
    assert ShapesRecipe().threads == AttnOnlyRecipe().threads == SAERecipe().threads == 1
    assert BandingRecipe().threads == BranchedRecipe().threads == architecture_recipe("vgg").threads == 1
