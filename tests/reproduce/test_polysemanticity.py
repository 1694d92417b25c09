import math

import pytest

from mechscope.reproduce import polysemanticity
from mechscope.reproduce.polysemantic_sae import load_mixed3b_sae

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sae_polysemanticity_claim_computes_its_controls_and_verdict(tmp_path):
    result = polysemanticity.check(tmp_path, images=120, k=3)
    assert result.summary and result.controls and "|" not in result.summary
    n = result.numbers
    for name in ("units", "sae", "untrained_sae", "random_rotation"):       # the finding and both direction controls
        assert 0 < n[name]["live"] <= n[name]["of"] and 0 <= n[name]["median_bits"] <= math.log2(3) + 1e-3, name
    assert n["units"]["of"] == n["random_rotation"]["of"] == 208 and n["sae"]["of"] == n["untrained_sae"]["of"] == 832
    assert set(n["shuffled_labels"]) == {"units", "sae"}                    # the labels-shuffled ceiling
    assert 0 < n["shuffled_labels"]["units"] <= math.log2(3) + 1e-3
    assert 0 < n["sae_config"]["fraction_of_variance_unexplained_here"] < 1
    assert n["difference_units_minus_sae_bits"] == pytest.approx(
        n["units"]["median_bits"] - n["sae"]["median_bits"], abs=2e-3)
    conditions = n["conditions"]
    assert conditions["sae_below_units_by_margin"] == (
        n["sae"]["median_bits"] <= n["units"]["median_bits"] - polysemanticity.MARGIN + 1e-3)
    assert result.passed == all(conditions.values())
    # the verdict: the bundled SAE's latents are not more monosemantic than the units here, as at the default sizes
    # (600 images, k 12: SAE 2.36 bits, units 1.96, untrained SAE 2.40, random rotation 1.95, shuffled 3.09)
    assert result.passed is False and conditions["sae_below_units_by_margin"] is False
    assert result.figures == ["polysemanticity_sae.png"] and (tmp_path / "polysemanticity_sae.png").exists()
    assert polysemanticity.CLAIM.check is polysemanticity.check and "untrained" in polysemanticity.CLAIM.criterion


def test_the_bundled_sae_matches_its_card():
    sae, card = load_mixed3b_sae()
    assert sae.W_dec.shape == (card["recipe"]["n_latents"], card["d_in"]) == (832, 208)
    assert card["recipe"]["world_seed"] == 0 and card["seconds"] < 400
    assert card["retrain"] == "mechscope train shapes-sae"
