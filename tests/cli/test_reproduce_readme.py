import json

from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.reproduce.claims import AREAS

runner = CliRunner()


def _report(tmp_path):
    row = {"name": "two-plus-two", "area": "vision", "paper": "arithmetic", "passed": True, "summary": "sum 4",
           "seconds": 0.1}
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"claims": [row]}))
    return path


def test_readme_and_check_readme_options(tmp_path):
    report, readme = _report(tmp_path), tmp_path / "README.md"
    readme.write_text("".join(f"<!-- reproduce:{a} -->\nold\n<!-- /reproduce:{a} -->\n" for a in AREAS))
    args = ["--report", str(report), "--readme-file", str(readme)]
    r = runner.invoke(app, ["reproduce", "--check-readme", *args])
    areas = ", ".join(AREAS)   # every area's section differs from the report's rendering
    assert r.exit_code == 1 and f"{areas} claim tables differ" in r.output
    r = runner.invoke(app, ["reproduce", "--readme", *args])
    assert r.exit_code == 0 and f"rewrote the {areas}" in r.output
    assert "| `two-plus-two` | arithmetic | **pass** | sum 4 | 0.1 s |" in readme.read_text()
    r = runner.invoke(app, ["reproduce", "--check-readme", *args])
    assert r.exit_code == 0 and "match" in r.output
    r = runner.invoke(app, ["reproduce", "--readme", *args])
    assert r.exit_code == 0 and "already match" in r.output


def test_readme_option_without_a_report_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("x")
    r = runner.invoke(app, ["reproduce", "--readme", "--report", str(tmp_path / "none.json"),
                            "--readme-file", str(readme)])
    assert r.exit_code != 0 and "no report at" in str(r.exception) and readme.read_text() == "x"
