import json

from typer.testing import CliRunner

from mechscope.cli import app

runner = CliRunner()


def test_the_n3_m2_phase_experiment_is_listed_and_writes_its_maps(tmp_path):
    r = runner.invoke(app, ["superposition", "list", "--json"])
    assert r.exit_code == 0 and {"phase", "phase_3_2"} <= {x["name"] for x in json.loads(r.output)}
    r = runner.invoke(app, ["superposition", "run", "phase_3_2", "--steps", "10", "--k", "1", "--threads", "1",
                            "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.output)
    assert payload["figures"] == ["phase_diagram.png"] and (tmp_path / "phase_diagram.png").exists()
    agreement = payload["summary"]["agreement"]
    assert agreement["cells"] == 64 == len(payload["instances"])
    assert 0 <= agreement["control_shuffled_mean"] <= agreement["control_shuffled_p95"] <= 1
    assert {x["optimal_phase"] for x in payload["instances"]} <= {"not represented", "dedicated dimension",
                                                                   "superposition"}
