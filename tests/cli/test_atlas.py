import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.data.multimodal import render
from mechscope.errors import MechscopeError

runner = CliRunner()


def test_concept_atlas_writes_its_figure_and_json(tmp_path):
    r = runner.invoke(app, ["concept-atlas", "shapes-clip", "--k", "3", "--per-cell", "2", "--out", str(tmp_path),
                            "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["atlas"]["k"] == 3 and "random_units_match_rate" in d["composites"]
    assert (tmp_path / "concept_atlas.png").stat().st_size > 0
    assert json.loads((tmp_path / "concept_atlas.json").read_text())["atlas"]["layer"] == "image_embed"


@pytest.fixture(scope="module")
def shape_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    classes = ["star", "ring", "wave"]
    b = render([c for c in classes for _ in range(4)], None, "picture", seed=4000, indices=list(range(12)))
    for i, img in enumerate(b.images):
        d = root / classes[i // 4]
        d.mkdir(exist_ok=True)
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(d / f"{i}.png")
    return root


def test_zeroshot_on_a_folder_of_class_subfolders(shape_folder):
    r = runner.invoke(app, ["zeroshot", "shapes-clip", "--dataset", str(shape_folder), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["classes"] == ["ring", "star", "wave"] and d["n"] == 12 and d["accuracy"] >= 0.9
    r = runner.invoke(app, ["zeroshot", "shapes-clip", "--dataset", str(shape_folder)])
    assert r.exit_code == 0 and "3 classes, 12 images" in r.output


def test_zeroshot_refuses_a_folder_without_class_subfolders(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    r = runner.invoke(app, ["zeroshot", "shapes-clip", "--dataset", str(tmp_path)])
    assert r.exit_code != 0 and isinstance(r.exception, MechscopeError) and "subfolder" in str(r.exception)
    r = runner.invoke(app, ["zeroshot", "shapes-clip", "--dataset", str(tmp_path / "missing")])
    assert isinstance(r.exception, MechscopeError) and "not a folder" in str(r.exception)
