"""The reproduction command each bundled organism's registry entry (or card) names, run through the CLI exactly
as written, builds the recipe its card records: the CLI's defaults are the recipe's defaults are what shipped.
The training itself is replaced by a stand-in that captures the recipe (the real runs take minutes to hours)."""

import json
import re
import shlex
from dataclasses import asdict

import pytest
from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.zoo.registry import bundle_dir, bundled_card, cards
from tests.zoo.organisms.test_recipe_defaults import ADDED_LATER, RECORDING_ONLY

# where each `mechscope train X` sub-command finds its training function (imported when the command runs)
TRAINERS = {
    "shapes": ("mechscope.vision.families.census", "train_shapes_with_census"),
    "shapes-arch": ("mechscope.zoo.organisms.shapes_recipe", "train_shapes"),
    "attn-only": ("mechscope.zoo.organisms.attn_only_recipe", "train_attn_only"),
    "mlp-1l": ("mechscope.zoo.organisms.attn_only_recipe", "train_attn_only"),
    "banding": ("mechscope.zoo.organisms.banding_recipe", "train_banding"),
    "branched": ("mechscope.zoo.organisms.branched_recipe", "train_branched"),
    "shapes-sae": ("mechscope.reproduce.polysemantic_sae", "train_mixed3b_sae"),
    "shapes-clip": ("mechscope.zoo.organisms.shapes_clip_recipe", "train_shapes_clip"),
}


class _Captured(Exception):
    pass


def _recipe_of(command: str, monkeypatch, tmp_path) -> dict:
    """Run ``command`` (``mechscope train ...``) with its trainer replaced; the recipe it was given, as a card
    records it (JSON values; the world with the recipe's size; the banding variant inside)."""
    import importlib

    argv = shlex.split(command)
    assert argv[:2] == ["mechscope", "train"], command
    module, attr = TRAINERS[argv[2]]
    seen: dict = {}

    def fake(out, *args, **kwargs):
        seen["args"] = args
        raise _Captured

    monkeypatch.setattr(importlib.import_module(module), attr, fake)
    result = CliRunner().invoke(app, [*argv[1:], "--out", str(tmp_path)])
    assert isinstance(result.exception, _Captured), (command, result.output, result.exception)
    *variant, recipe = seen["args"]
    record = asdict(recipe)
    if "world" in record and hasattr(recipe, "size"):   # the shapes world: its size lives on the recipe
        record["world"] = {**recipe.world.as_dict(), "size": recipe.size}
    if variant:
        record = {"variant": variant[0], **record}
    return json.loads(json.dumps(record))


def _command(license_text: str) -> str:
    found = re.findall(r"`(mechscope train [^`]+)`", license_text)
    assert len(found) == 1, license_text
    return found[0]


BUNDLED = [card for card in cards() if card.bundled is not None]


@pytest.mark.parametrize("card", BUNDLED, ids=[card.name for card in BUNDLED])
def test_the_registrys_reproduction_command_builds_the_cards_recipe(card, monkeypatch, tmp_path):
    recorded = bundled_card(card.name)["recipe"]
    built = _recipe_of(_command(card.license), monkeypatch, tmp_path)
    assert {k: v for k, v in built.items() if k in recorded} == recorded, card.name
    # a field the card does not record is one added to the recipe later; its default is the old behaviour
    assert all(ADDED_LATER.get(k, object()) == v for k, v in built.items()
               if k not in recorded and k not in RECORDING_ONLY), card.name


def test_the_sae_cards_retrain_command_builds_its_recipe(monkeypatch, tmp_path):
    card = json.loads((bundle_dir() / "shapes_mixed3b_sae.json").read_text())
    built = _recipe_of(card["retrain"], monkeypatch, tmp_path)
    assert built == {**card["recipe"], "threads": card["threads"]}


def test_flags_still_override_the_defaults(monkeypatch, tmp_path):
    built = _recipe_of("mechscope train attn-only --layers 1 --threads 2 --vocab 300 --corpus-mb 0.5 --steps 3",
                       monkeypatch, tmp_path)
    assert (built["threads"], built["d_vocab"], built["corpus_bytes"], built["steps"]) == (2, 300, 500_000, 3)
