"""``mechscope microscope build --ray ADDRESS`` (or ``RAY_ADDRESS``): the build goes to that Ray cluster, and an
address where nothing answers is named at once; ``--workers`` is gone."""

import socket

import pytest
from typer.testing import CliRunner

from mechscope.cli import app

runner = CliRunner()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("how", ["option", "environment"])
def test_build_goes_to_the_ray_address_given(tmp_path, how):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_closed_port()}"
    args = ["microscope", "build", "shapes", "conv2d0", "--units", "1", "--steps", "1", "--out", str(tmp_path / "s")]
    result = runner.invoke(app, args + ["--ray", address] if how == "option" else args,
                           env={"RAY_ADDRESS": address} if how == "environment" else {})
    assert result.exit_code != 0
    text = result.output + str(result.exception or "")
    assert f"cannot connect to the Ray cluster at '{address}'" in text and "nothing answers" in text
    assert not (tmp_path / "s" / "png").exists()     # nothing was computed in-process instead


def test_workers_is_no_longer_an_option(tmp_path):
    result = runner.invoke(app, ["microscope", "build", "shapes", "conv2d0", "--workers", "2",
                                 "--out", str(tmp_path / "s")])
    assert result.exit_code != 0
    assert "--workers" in result.output
