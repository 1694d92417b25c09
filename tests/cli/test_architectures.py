import json

import pytest
from typer.testing import CliRunner

from mechscope.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def test_universality_compares_families_of_two_architectures_against_the_untrained_twin(tmp_path):
    r = runner.invoke(app, ["universality", "shapes:mixed3b", "shapes-resnet:block3", "--orientations", "24",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    payload = json.loads((tmp_path / "shapes_mixed3b_vs_shapes-resnet_block3.json").read_text())
    assert payload["models"] == ["shapes", "shapes-resnet"] and payload["b"]["layer"] == "block3"
    assert payload["control"]["units"] == 64 and "share_matched" in payload["match_control"]
    assert (tmp_path / "shapes_mixed3b_vs_shapes-resnet_block3.png").read_bytes()[:4] == b"\x89PNG"
    assert "untrained shapes-resnet" in r.output


def test_universality_needs_model_and_layer(tmp_path):
    r = runner.invoke(app, ["universality", "shapes", "shapes-vgg:conv3_2", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "MODEL:LAYER" in str(r.exception)


def test_train_shapes_arch_writes_its_own_weights_and_card(tmp_path):
    r = runner.invoke(app, ["train", "shapes-arch", "vgg", "--out", str(tmp_path), "--steps", "1", "--batch-size",
                            "4", "--eval-items", "8"])
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "shapes_vgg.json").read_text())
    assert card["name"] == "shapes-vgg" and card["recipe"]["architecture"] == "vgg" and card["recipe"]["steps"] == 1
    assert (tmp_path / "shapes_vgg.safetensors").exists() and "held-out accuracy" in r.output
