"""Per-unit evidence computed per layer: feature use (ablation) and universality partners on the organism."""

import pytest

from mechscope.errors import MechscopeError
from mechscope.microscope.build import build
from mechscope.microscope.kinds import ABLATION, PARTNER
from mechscope.microscope.options import Evidence, FeatureUse, Partners
from mechscope.microscope.site import render_layer, render_unit
from mechscope.store import open_store, read_rows
from mechscope.zoo.registry import load

FAST = Evidence(steps=2, size=64, negative=False, tuning=False)


def test_ablation_and_partner_figures_are_built_scored_linked_and_incremental(tmp_path):
    net = load("shapes", device="cpu")
    options = dict(evidence=FAST, channels={"mixed4b": [3, 7]}, feature_use=FeatureUse(images=40),
                   partners=Partners("shapes-seed1", images=8, k=2), progress=False)
    assert build(net, "shapes", ["mixed4b"], tmp_path, **options) == {"built": 2, "skipped": 0}
    seed1 = load("shapes-seed1", device="cpu")
    build(seed1, "shapes-seed1", ["mixed4b"], tmp_path, evidence=FAST, progress=False)
    with open_store(tmp_path) as store:
        ablation = {r["channel"]: r for r in read_rows(store, "figures", model="shapes", kind=ABLATION.name)}
        partner = {r["channel"]: r for r in read_rows(store, "figures", model="shapes", kind=PARTNER.name)}
        assert set(ablation) == set(partner) == {3, 7}
        s = ablation[3]["settings"]
        assert set(s["drops"]) == {"shape", "curve", "boundary", "colour"} and s["score"] == max(s["drops"].values())
        assert ablation[3]["png"] is not None and partner[3]["png"] is None
        links = partner[7]["settings"]["units"]
        assert len(links) == 2 and all(u["model"] == "shapes-seed1" for u in links)
        assert links[0]["weight"] >= links[1]["weight"] and partner[7]["settings"]["score"] == links[0]["weight"]
        page = render_unit(store, "shapes", "mixed4b", 7)
        assert "Feature use" in page and "Universality" in page
        assert f"shapes-seed1 {links[0]['unit']}" in page and "shapes-seed1/mixed4b/" in page  # cross-model link
        assert "ablation cost" in render_layer(store, "shapes", "mixed4b")                    # a sort key
    assert build(net, "shapes", ["mixed4b"], tmp_path, **options) == {"built": 0, "skipped": 2}
    changed = {**options, "feature_use": FeatureUse(images=40, mode="mean")}
    assert build(net, "shapes", ["mixed4b"], tmp_path, **changed) == {"built": 2, "skipped": 0}


def test_feature_use_needs_a_shapes_world_organism_and_valid_options(tmp_path):
    with pytest.raises(MechscopeError, match="mode is 'zero' or 'mean'"):
        FeatureUse(mode="half")
    with pytest.raises(MechscopeError, match="images"):
        FeatureUse(images=0)
    with pytest.raises(MechscopeError, match="k must be at least 1"):
        Partners("shapes-seed1", k=0)
    with pytest.raises(MechscopeError, match="feature_use takes"):
        build(load("shapes", device="cpu"), "shapes", ["mixed4b"], tmp_path, feature_use=300, progress=False)


def test_partners_in_a_layer_of_another_name_and_the_cli_options(tmp_path):
    from typer.testing import CliRunner

    from mechscope.cli import app
    from mechscope.microscope.layer_evidence import partner_figures

    [(row, _)] = partner_figures(load("shapes", device="cpu"), "mixed3b", [20],
                                 Partners("shapes-vgg", images=4, k=2, layer="conv3_2"))
    assert row["settings"]["partner_layer"] == "conv3_2"
    assert all(u["unit"].startswith("conv3_2:") and u["model"] == "shapes-vgg" for u in row["settings"]["units"])
    result = CliRunner().invoke(app, ["microscope", "build", "shapes", "mixed4b", "--units", "1", "--steps", "1",
                                      "--feature-use", "20", "--partners", "shapes-vgg:conv4_1", "--out",
                                      str(tmp_path)])
    assert result.exit_code == 0, result.output
    with open_store(tmp_path) as store:
        [partner] = read_rows(store, "figures", model="shapes", kind=PARTNER.name)
        [ablation] = read_rows(store, "figures", model="shapes", kind=ABLATION.name)
    assert partner["settings"]["partner_layer"] == "conv4_1" and ablation["settings"]["images"] == 20
