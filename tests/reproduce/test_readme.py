"""report.json's schema, the README's generated claim tables, and the tie between README.md and the committed
report in docs/reproduce."""

import json
import re
from pathlib import Path

import pytest

from mechscope.errors import MechscopeError
from mechscope.reproduce import claims as claims_module
from mechscope.reproduce.claims import Claim, Result, claim_area, control_numbers, run_claims, summary_line
from mechscope.reproduce.readme import readme_diff, render_area, update_readme, write_readme
from mechscope.reproduce.registry import CLAIMS, claim_names

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "reproduce" / "report.json"


def _toy_claims():
    implicit = Claim("found", "Paper A", "a unit exists", "score >= 0.5",
                     lambda out: Result({"score": 0.91234, "untrained_score": 0.1, "per_unit": [1, 2],
                                         "family": {"n": 3, "random_share": 0.25}}, True))
    explicit = Claim("copies", "Paper B | 2", "heads copy", "copying >= 0.9",
                     lambda out: Result({"copying": 0.5, "baseline": 0.4}, False, note="did not hold",
                                        controls={"shuffled_copying": 0.45},
                                        summary="copying 0.5 vs 0.45 | shuffled"),
                     area="transformer")
    return [implicit, explicit]


def test_report_json_has_every_number_control_verdict_and_time(tmp_path):
    rows = run_claims(_toy_claims(), tmp_path, progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["claims"] == rows and report["total"] == 2 and report["passed"] == 1
    assert set(report["machine"]) == {"cpu", "cores", "threads", "torch", "python", "platform"}
    assert report["machine"]["threads"] >= 1 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report["date"])
    assert report["seconds"] >= sum(r["seconds"] for r in rows) - 0.2
    found, copies = rows
    assert set(found) == {"name", "area", "paper", "statement", "criterion", "verdict", "passed", "numbers",
                          "controls", "summary", "figures", "note", "seconds"}
    # the control picked from the numbers by its key (at any depth), or named by the claim itself
    assert found["controls"] == {"untrained_score": 0.1, "family.random_share": 0.25}
    assert copies["controls"] == {"shuffled_copying": 0.45}
    assert (found["verdict"], copies["verdict"]) == ("pass", "fail")
    assert (found["area"], copies["area"]) == ("vision", "transformer")
    assert found["summary"] == "score 0.912, untrained_score 0.1, per_unit [1, 2]"
    assert copies["summary"] == "copying 0.5 vs 0.45 | shuffled"                # the claim's own line
    assert json.loads((tmp_path / "results.json").read_text()) == rows          # kept: scripts read it
    md = (tmp_path / "report.md").read_text()
    assert "Control: shuffled_copying = 0.45" in md and "## copies — FAIL" in md
    bare = run_claims([Claim("bare", "p", "s", "c", lambda out: Result({"x": 1}, True))], tmp_path / "b",
                      progress=False)
    assert bare[0]["controls"] == {} and "Control: none named" in (tmp_path / "b" / "report.md").read_text()


def test_an_unknown_area_fails_before_any_claim_runs(tmp_path):
    ran = []
    ok = Claim("ok", "p", "s", "c", lambda out: ran.append(1) or Result({}, True))
    bad = Claim("bad", "p", "s", "c", lambda out: Result({}, True), area="biology")
    with pytest.raises(MechscopeError, match="biology"):
        run_claims([ok, bad], tmp_path, progress=False)
    assert ran == [] and not (tmp_path / "report.json").exists()


def test_every_registered_claim_has_an_area_and_the_three_areas_are_present():
    areas = {c.name: claim_area(c) for c in CLAIMS}
    assert areas["two-layer-induction-heads"] == "transformer" and areas["tms-sparse-pentagon"] == "superposition"
    assert areas["curve-detectors-exist"] == "vision" and set(areas.values()) == set(claims_module.AREAS)
    assert areas["tms-phase-boundary"] == areas["tms-phase-diagram-3-2"] == "superposition"   # set by the registry
    assert all(c.area for c in CLAIMS)


def test_control_numbers_and_summary_line():
    assert control_numbers({"trained": {"n": 1}, "untrained_control": {"n": 0}}) == {"untrained_control": {"n": 0}}
    assert control_numbers({"score": 1}) == {}
    assert summary_line({"a": 1, "b": 2.0, "c": 3, "d": 4, "e": 5, "f": 6}) == "a 1, b 2, c 3, d 4, e 5"
    lists = {"long": [1, 2, 3, 4, 5, 6], "nested": [[1]], "five": [1, 2, 3, 4, 5]}
    assert summary_line(lists) == "five [1, 2, 3, 4, 5]"


def test_render_and_update_the_marked_sections(tmp_path):
    run_claims(_toy_claims(), tmp_path, progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    vision = render_area(report, "vision")
    assert vision.startswith("1 of 1 claims pass") and "| `found` | Paper A | **pass** | score 0.912" in vision
    transformer = render_area(report, "transformer")
    assert "Paper B \\| 2" in transformer and "**fail**" in transformer and "0.45 \\| shuffled" in transformer
    assert render_area(report, "superposition") == "No superposition claim in this report.\n"
    text = "".join(f"prose {a}\n<!-- reproduce:{a} -->\nold\n<!-- /reproduce:{a} -->\n"
                   for a in claims_module.AREAS)
    new = update_readme(text, report)
    assert "old" not in new and new.count("prose") == len(claims_module.AREAS) and vision in new and transformer in new
    assert update_readme(new, report) == new                                   # idempotent
    with pytest.raises(MechscopeError, match="reproduce:vision"):
        update_readme("no markers", report)
    readme = tmp_path / "README.md"
    readme.write_text(text)
    assert readme_diff(readme, tmp_path / "report.json") == list(claims_module.AREAS)
    assert write_readme(readme, tmp_path / "report.json") == list(claims_module.AREAS)
    assert readme.read_text() == new and readme_diff(readme, tmp_path / "report.json") == []
    with pytest.raises(MechscopeError, match="no report"):
        readme_diff(readme, tmp_path / "missing.json")


def test_readme_tables_are_generated_from_the_committed_report():
    """README.md's claim tables equal the rendering of docs/reproduce/report.json: regenerate them with
    ``mechscope reproduce --readme`` after committing a new report."""
    assert readme_diff(ROOT / "README.md", COMMITTED) == []


def test_committed_report_names_exactly_the_registered_claims():
    """FAILS UNTIL THE LEAD REGENERATES THE REPORT: docs/reproduce/report.json was made from a few fast claims
    (engineer R, issue 16); run ``mechscope reproduce all --out docs/reproduce`` and ``mechscope reproduce
    --readme``, then commit both."""
    names = [row["name"] for row in json.loads(COMMITTED.read_text())["claims"]]
    assert names == claim_names()


def test_committed_report_rows_all_have_their_own_summary_and_controls():
    """FAILS UNTIL THE LEAD REGENERATES THE REPORT (as the test above): every claim now sets ``Result.summary``
    (its key numbers and its control's, in one line) and ``Result.controls``; a report made before that shows
    the fallback ``summary_line`` of the first numbers and controls guessed from key names (or none)."""
    for row in json.loads(COMMITTED.read_text())["claims"]:
        summary = row["summary"]
        assert summary and summary != summary_line(row["numbers"]), row["name"]
        assert len(summary) <= 200 and "|" not in summary, row["name"]
        assert row["controls"], row["name"]
