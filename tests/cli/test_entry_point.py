"""``python -m mechscope``: the same command as the ``mechscope`` console script."""

import os
import subprocess
import sys
from pathlib import Path

import typer

import mechscope
from mechscope.cli import app


def test_python_dash_m_mechscope_help_lists_every_verb():
    src = str(Path(mechscope.__file__).resolve().parents[1])   # this checkout's sources, not an installed copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.run([sys.executable, "-m", "mechscope", "--help"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    verbs = sorted(typer.main.get_command(app).commands)
    assert {"models", "examples", "train", "reproduce", "heads", "superposition", "microscope"} <= set(verbs)
    listed = {line.strip(" │|").split()[0] for line in proc.stdout.splitlines() if line.strip(" │|").split()}
    assert set(verbs) <= listed, sorted(set(verbs) - listed)
