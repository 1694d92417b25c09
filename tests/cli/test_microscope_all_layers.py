"""`mechscope microscope build MODEL --all-layers`: every main layer, unit counts printed before the build."""

from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.store import open_store, read_rows
from mechscope.zoo.listing import atlas_layers

SHAPES_LAYERS = ["conv2d0", "conv2d1", "conv2d2", "mixed3a", "mixed3b", "mixed4a", "mixed4b"]


def test_all_layers_builds_every_main_layer_and_prints_the_counts_first(tmp_path, monkeypatch):
    """The wiring: the counts line comes first and build_model gets every atlas layer (a real build of 7 layers'
    feature visualizations and tuning curves takes a minute on 2 cores; microscope.build's tests cover it)."""
    from mechscope.microscope import models

    called = {}

    def build_model(name, layers, out, **options):
        called.update(name=name, layers=list(layers), units=options["units_per_layer"])
        return models.Built(models.VISION, {name: {"built": 7, "skipped": 0}})

    monkeypatch.setattr(models, "build_model", build_model)
    result = CliRunner().invoke(app, ["microscope", "build", "shapes", "--all-layers", "--units", "300",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == ("shapes: 7 layers, 944 units: conv2d0 32, conv2d1 32, conv2d2 64, mixed3a 128, mixed3b 208, "
                        "mixed4a 224, mixed4b 256")
    assert called == {"name": "shapes", "layers": SHAPES_LAYERS, "units": 300} and "built 7 units" in lines[1]


def test_all_layers_really_builds_one_unit_of_each_layer(tmp_path):
    out = tmp_path / "atlas"
    result = CliRunner().invoke(app, ["microscope", "build", "branched-2", "--all-layers", "--units", "1", "--steps",
                                      "1", "--weights", "random", "--out", str(out)])
    assert result.exit_code == 0, result.output
    layers = list(atlas_layers("branched-2"))
    assert result.output.splitlines()[0].endswith(", ".join(f"{layer} 1" for layer in layers))
    with open_store(out) as store:
        assert {r["layer"] for r in read_rows(store, "figures", model="branched-2", kind="featvis")} == set(layers)


def test_atlas_layers_leave_out_taps_branches_and_pooling():
    widths = atlas_layers("shapes")
    assert list(widths) == SHAPES_LAYERS and sum(widths.values()) == 944


def test_all_layers_refuses_layers_too_and_language_models(tmp_path):
    both = CliRunner().invoke(app, ["microscope", "build", "shapes", "mixed3a", "--all-layers", "--out", str(tmp_path)])
    assert both.exit_code == 1 and "not both" in str(both.exception)
    tokens = CliRunner().invoke(app, ["microscope", "build", "attn-only-1l", "--all-layers", "--out", str(tmp_path)])
    assert tokens.exit_code == 1 and "language model" in str(tokens.exception)
