"""The dictionary-features-monosemantic claim: its verdict is its stated conditions on its numbers, and the
criterion can fail (a margin no measure can clear).  Run on the first rows of the bundled sample for time; the
full claim is `mechscope reproduce dictionary-features-monosemantic`."""

import pytest

from mechscope.reproduce import dictionary_features as claim
from mechscope.reproduce.registry import get_claims

ROWS = 48


@pytest.fixture(scope="module")
def measured():
    return claim.measure(ROWS)


def test_verdict_follows_the_stated_conditions(measured, monkeypatch, tmp_path):
    monkeypatch.setattr(claim, "measure", lambda rows=None: measured)
    r = claim.check(tmp_path)
    n, c = r.numbers, r.numbers["conditions"]
    mean = n["class_concentration"]
    assert n["tokens"] == ROWS * 128 and set(mean) == {"neurons", "latents", "random_directions"}
    assert c["latents_above_neurons_by_margin"] == (mean["latents"] >= mean["neurons"] + claim.MARGIN - 1e-4)
    assert c["latents_above_random_by_margin"] == (mean["latents"] >= mean["random_directions"] + claim.MARGIN - 1e-4)
    assert r.passed == all(c.values())
    assert r.controls["random_directions_class_concentration"] == mean["random_directions"]
    assert all(0 < v <= 1 for v in mean.values()) and n["scored"]["neurons"] == "512/512"
    monkeypatch.setattr(claim, "MARGIN", 1.0)   # no concentration (<= 1) clears a margin of 1 above another's
    assert claim.check(tmp_path).passed is False
    assert get_claims(["dictionary-features-monosemantic"])[0].area == "transformer"
