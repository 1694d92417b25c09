import pytest

from mechscope.reproduce import first_layer_branches as flb

pytestmark = pytest.mark.usefixtures("one_thread")


def test_split_claim_passes_against_random_partitions_and_the_untrained_nets(tmp_path):
    result = flb.check_split(tmp_path, draws=300)
    assert result.summary and result.controls and "|" not in result.summary
    assert result.passed
    for g in flb.BRANCHED:
        row = result.numbers[f"groups_{g}"]
        trained, control = row["trained"], row["untrained_control"]
        assert row["passes"] and len(trained["branch_means"]) == g
        assert trained["percentile_vs_random_partitions"] >= flb.PERCENTILE
        assert trained["random_partitions"]["draws"] == 300 and control["random_partitions"]["draws"] == 300
        # the control is computed: the untrained nets' branches are alike, their split unremarkable
        assert trained["split"] > control["split"] and control["percentile_vs_random_partitions"] < 0.95
    assert result.figures == ["first_layer_branches.png"] and (tmp_path / "first_layer_branches.png").exists()


def test_svd_claim_fails_honestly_and_computes_its_control(tmp_path):
    result = flb.check_svd(tmp_path, seeds=5)
    assert result.summary and result.controls and "|" not in result.summary
    n = result.numbers
    assert not result.passed
    # measured: the first component is the most luminance-like of the top four, not the most colourful
    assert not n["trained"]["colour_first"] and n["trained"]["colour"][0] == min(n["trained"]["colour"])
    assert len(n["untrained_control"]["colour"]) == flb.TOP and not n["untrained_control"]["holds"]
    assert n["untrained_seeds"] == 5 and 0 <= n["untrained_share_with_order"] <= 1
    assert 0 < n["conv1_change_from_init"] < 2
    assert (tmp_path / "first_layer_svd.png").exists()


def test_claim_table():
    assert [c.name for c in flb.CLAIMS] == ["first-layer-branches-split-colour",
                                            "first-layer-svd-colour-then-frequency"]
