"""``--device`` and ``--amp`` on the command line: a device this machine lacks, or a string that is no device, is
one ``error:`` line before any work (exit status 1); ``--amp`` on the CPU says it does nothing and runs."""

import sys

import pytest
import torch

from mechscope.cli import main


def _fails(monkeypatch, capsys, argv):
    monkeypatch.setattr(sys, "argv", ["mechscope", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("argv", [
    ["microscope", "build", "shapes", "mixed3a"],
    ["examples", "shapes", "mixed3a", "--dataset", "shapes:4"],
    ["stats", "shapes", "mixed3a", "--dataset", "shapes:4"],
    ["train", "shapes", "--steps", "1"],
    ["demo", "--no-serve"],
])
def test_cuda_on_a_machine_without_it_is_one_clear_error(monkeypatch, capsys, tmp_path, argv):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    lines = _fails(monkeypatch, capsys, [*argv, "--out", str(tmp_path / "out"), "--device", "cuda"])
    assert lines == [f"error: device 'cuda' asked for, but this machine has no CUDA GPU that torch "
                     f"{torch.__version__} can use (torch.cuda.is_available() is False); use --device cpu"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())   # no work done


def test_an_unknown_device_names_the_valid_forms(monkeypatch, capsys, tmp_path):
    lines = _fails(monkeypatch, capsys, ["microscope", "build", "shapes", "mixed3a", "--out", str(tmp_path),
                                         "--device", "gpu0"])
    assert lines == ["error: unknown device 'gpu0'; valid: cpu, cuda, cuda:N (N a GPU index) or mps"]


def test_amp_on_the_cpu_says_so_and_runs(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["mechscope", "stats", "shapes", "conv2d0", "--dataset", "shapes:4",
                                      "--out", str(tmp_path), "--device", "cpu", "--amp", "--plot-units", "0"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0
    captured = capsys.readouterr()
    assert "--amp has no effect on the CPU" in captured.err
    assert "scanned 4 images" in captured.out
