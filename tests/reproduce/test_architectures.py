"""The universality-across-architectures claims on the three bundled shapes-world organisms, with their untrained
twins as controls (at 36 orientations to keep the test short; the default check uses 72)."""

import pytest

from mechscope.reproduce import architectures as A

pytestmark = pytest.mark.usefixtures("one_thread")


def test_census_claim_fails_on_the_resnet_whose_untrained_twin_also_passes_the_finder(tmp_path):
    result = A.check_census(tmp_path, n_orientations=36)
    assert result.summary and result.controls and "|" not in result.summary
    census = result.numbers["census"]
    assert set(census) == {"shapes", "shapes-vgg", "shapes-resnet"}
    for name, c in census.items():                       # every architecture's untrained twin is measured
        assert c["untrained"]["units"] == c["trained"]["units"] and "high_low_detectors" in c["untrained"]
        assert c["curve_share_gap"] == pytest.approx(c["trained"]["curve_share"] - c["untrained"]["curve_share"],
                                                     abs=1e-3)
    assert result.numbers["passes"]["shapes"] and result.numbers["passes"]["shapes-vgg"]
    assert census["shapes-resnet"]["curve_share_gap"] < A.MIN_SHARE_GAP
    assert result.passed is False
    assert (tmp_path / "architectures_census.png").read_bytes()[:4] == b"\x89PNG"


def test_match_claim_holds_for_both_architectures_against_their_untrained_twins(tmp_path):
    result = A.check_match(tmp_path, n_orientations=36)
    assert result.summary and result.controls and "|" not in result.summary
    for name in ("shapes-vgg", "shapes-resnet"):
        m = result.numbers["matches"][name]
        assert m["shapes_detectors"] >= A.MIN_DETECTORS
        assert 0.0 <= m["share_matched_untrained"] < m["share_matched"]          # the control is computed
        assert m["gap"] >= A.MIN_MATCH_GAP and "share_matched_in_untrained_shapes" in m["reverse"]
    assert result.passed is True and result.figures == ["architectures_match.png"]
    assert [c.name for c in A.CLAIMS] == ["curve-detectors-in-three-architectures",
                                          "curve-detectors-match-across-architectures"]
