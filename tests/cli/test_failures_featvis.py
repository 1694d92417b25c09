"""``mechscope vis`` failure modes: a unit out of range on a layer of undeclared width, and a model whose
weights make the loss NaN, are one ``error: ...`` line on stderr, exit status 1, before (or instead of) a
traceback."""

import subprocess
import sys

from typer.testing import CliRunner

import mechscope
from mechscope.cli import app
from mechscope.errors import MechscopeError
from mechscope.units import layer_width
from mechscope.zoo.weights import save_state_dict

runner = CliRunner()
UNDECLARED = "mixed3a.pre_relu"  # the shapes organism's concat of mixed3a: a module path, its width not declared


def _vis(*args):
    return subprocess.run([sys.executable, "-m", "mechscope", "vis", "shapes", *args], capture_output=True,
                          text=True, timeout=300)


def test_out_of_range_unit_on_an_undeclared_width_is_one_line(tmp_path):
    net = mechscope.load("shapes", weights="random", device="cpu")
    assert layer_width(net, UNDECLARED) is None
    result = runner.invoke(app, ["vis", "shapes", f"{UNDECLARED}:500", "--weights", "random", "--steps", "2",
                                 "--size", "32", "--out", str(tmp_path)])
    assert isinstance(result.exception, MechscopeError)
    proc = _vis(f"{UNDECLARED}:500", "--weights", "random", "--steps", "2", "--size", "32", "--out", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: channel 500 is out of range for layer 'mixed3a.pre_relu', which has 128 "
                                  "channels (valid: 0..127)")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_nan_weights_stop_vis_with_the_step(tmp_path):
    net = mechscope.load("shapes", weights="random", seed=0, device="cpu")
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["conv2d0.conv.weight"][0] = float("nan")
    weights = tmp_path / "nan.safetensors"
    save_state_dict(state, weights)
    out = tmp_path / "out"
    proc = _vis("conv2d1:3", "--weights", str(weights), "--steps", "3", "--size", "32", "--out", str(out),
                "--device", "cpu")
    assert proc.returncode == 1, proc.stderr
    error = proc.stderr.splitlines()[-1]  # after the progress bar
    assert error.startswith("error: feature visualization of unit conv2d1:3 stopped: the objective became NaN at "
                            "step 1 of 3; the model's weights hold NaN/inf values (conv2d0.conv.weight)"), error
    assert "lower learning rate" in error and "Traceback" not in proc.stderr
    assert not out.exists()


def test_nan_check_does_not_stop_a_healthy_model(tmp_path):
    result = runner.invoke(app, ["vis", "shapes", f"{UNDECLARED}:127", "--weights", "random", "--steps", "2",
                                 "--size", "32", "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mixed3a.pre_relu_127.png").exists()
