"""``mechscope.microscope.models.build_model``: the dispatch of ``mechscope microscope build`` as a function."""

import pytest

from mechscope.errors import MechscopeError
from mechscope.microscope import kinds
from mechscope.microscope.models import build_model
from mechscope.microscope.options import Evidence
from mechscope.store import open_store, read_rows


def test_each_kind_of_model_goes_to_its_builder(tmp_path):
    toy = build_model("superposition", ["intro"], tmp_path, toy_steps=10, progress=False)
    assert toy.kind is kinds.TOY and toy.counts == {"superposition:intro": {"built": 10, "skipped": 0}}
    assert "superposition:intro: built 10 instances" in toy.describe()
    vision = build_model("shapes", ["mixed3a"], tmp_path, units_per_layer=1, progress=False,
                         evidence=Evidence(steps=2, negative=False, tuning=False))
    assert vision.kind is kinds.VISION and vision.counts == {"shapes": {"built": 1, "skipped": 0}}
    with open_store(tmp_path) as store:
        layer, = read_rows(store, "layers", model="shapes")
    assert layer["settings"]["size"] == 64  # the model's own input size when evidence.size is None


def test_wrong_layers_are_refused_with_what_is_valid(tmp_path):
    with pytest.raises(MechscopeError, match="takes no layers"):
        build_model("attn-only-1l", ["blocks.0.attn"], tmp_path, progress=False)
    with pytest.raises(MechscopeError, match="name the layers"):
        build_model("shapes", [], tmp_path, progress=False)
    with pytest.raises(MechscopeError, match="k is"):
        build_model("shapes", ["mixed3a"], tmp_path, k=0, progress=False)
