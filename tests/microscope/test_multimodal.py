"""Microscope pages of shapes-clip's units: a small build writes every multimodal figure kind, the pages show them,
the rows hold the numbers, a second build does nothing, and bad input is refused."""

import json

import pytest

import mechscope
from mechscope.errors import MechscopeError
from mechscope.microscope import kinds
from mechscope.microscope.multimodal import MultimodalPages, build_multimodal
from mechscope.microscope.site import render_layer, render_unit
from mechscope.store import open_store, read_png, read_rows

SMALL = MultimodalPages(per_cell=2, texts=4, facet_units=1, facet_steps=4, facet_size=32, attack_examples=2,
                        facet_layer="mixed4b")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("multimodal")
    model = mechscope.load("shapes-clip", device="cpu")
    counts = build_multimodal(model, "shapes-clip", ["mixed4b", "image_embed"], out,
                              units={"mixed4b": [90], "image_embed": [10]}, options=SMALL, progress=False)
    return model, out, counts


def test_every_unit_gets_its_figures_and_the_rows_hold_the_numbers(built):
    _, out, counts = built
    assert counts == {"built": 2, "skipped": 0}
    with open_store(out) as store:
        rows = read_rows(store, "figures", model="shapes-clip")
        have = {(r["layer"], r["channel"], r["kind"]) for r in rows}
        for layer, channel in (("mixed4b", 90), ("image_embed", 10)):
            for kind in (kinds.MODALITY_TABLE, kinds.TEXT_SIDE, kinds.TYPOGRAPHIC):
                assert (layer, channel, kind.name) in have
        assert ("mixed4b", 90, kinds.FACETED.name) in have and ("image_embed", 10, kinds.FACETED.name) in have
        assert ("mixed4b", -1, kinds.MULTIMODAL_UNITS.name) in have and ("image_embed", -1,
                                                                          kinds.MULTIMODAL_UNITS.name) in have
        for r in rows:
            assert set(kinds.figure_kind(r["kind"]).fresh) <= set(r["settings"])
            if r["png"]:
                assert read_png(store, r["png"])[:4] == b"\x89PNG"
        by = {(r["layer"], r["channel"], r["kind"]): r["settings"] for r in rows}
        table = by[("image_embed", 10, kinds.MODALITY_TABLE.name)]
        assert table["table"]["columns"][:3] == ["modality", "strongest concept", "σ"]
        assert [row[0] for row in table["table"]["rows"]] == ["picture", "sketch", "word"]
        assert all(isinstance(row[2], float) for row in table["table"]["rows"])
        assert table["score_name"] == "multimodal margin (σ)" and isinstance(table["multimodal"], bool)
        assert by[("image_embed", 10, kinds.FACETED.name)]["facet_layer"] == "mixed4b"
        assert set(by[("image_embed", 10, kinds.FACETED.name)]["values"]) == {"picture", "word"}
        text = by[("image_embed", 10, kinds.TEXT_SIDE.name)]
        assert len(text["table"]["rows"]) == 4 and -1 <= text["table"]["rows"][0][1] <= 1
        attack = by[("image_embed", 10, kinds.TYPOGRAPHIC.name)]
        assert [row[0] for row in attack["table"]["rows"]][::2] == ["clean", "random letters"]   # the control ran
        assert len(attack["control"]) == 2 and all(len(w) == len(attack["word"]) for w in attack["control"])
        layer_wide = by[("image_embed", -1, kinds.MULTIMODAL_UNITS.name)]
        assert set(layer_wide["counts"]) == {"0.0", "0.25", "0.5", "1.0"} and layer_wide["built"] == [10]
        json.dumps([r["settings"] for r in rows])                       # plain JSON all the way down
        (layer_row,) = read_rows(store, "layers", model="shapes-clip", layer="image_embed")
        assert layer_row["channels"] == 64 and layer_row["settings"]["thumbnail"] == kinds.MODALITY_TABLE.name


def test_pages_show_the_figures(built):
    _, out, _ = built
    with open_store(out) as store:
        page = render_unit(store, "shapes-clip", "mixed4b", 90)
        for kind in (kinds.MODALITY_TABLE, kinds.TEXT_SIDE, kinds.FACETED, kinds.TYPOGRAPHIC):
            assert kind.caption.split(":")[0] in page
        assert "mixed4b:90" in render_layer(store, "shapes-clip", "mixed4b")


def test_second_build_skips_and_bad_input_is_refused(built):
    model, out, _ = built
    units = {"mixed4b": [90], "image_embed": [10]}
    assert build_multimodal(model, "shapes-clip", ["mixed4b", "image_embed"], out, units=units, options=SMALL,
                            progress=False) == {"built": 0, "skipped": 2}
    with pytest.raises(MechscopeError, match="outside"):
        build_multimodal(model, "x", ["image_embed"], out, units={"image_embed": [64]}, options=SMALL, progress=False)
    with pytest.raises(MechscopeError, match="at least one layer"):
        build_multimodal(model, "x", [], out, options=SMALL, progress=False)
    with pytest.raises(MechscopeError, match="per_cell"):
        MultimodalPages(per_cell=0)
