import json

import pytest
from typer.testing import CliRunner

from mechscope.cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def test_circles_writes_json_and_figure(tmp_path):
    r = runner.invoke(app, ["circles", "shapes", "mixed4a", "--orientations", "12", "--draws", "50", "--top", "3",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    payload = json.loads((tmp_path / "mixed4a_circles.json").read_text())
    assert payload["units"] == 224 and payload["draws"] == 50 and len(payload["scores"]) == 224
    assert len(payload["top"]) <= 3 and "orientation shuffles" in r.output
    assert (tmp_path / "mixed4a_circles.png").exists()


def test_circles_refuses_an_unknown_layer(tmp_path):
    r = runner.invoke(app, ["circles", "shapes", "mixed9z", "--out", str(tmp_path)])
    assert r.exit_code != 0
