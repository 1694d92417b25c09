"""What a user sees when training fails: one ``error:`` line on stderr, exit status 1, no traceback."""

import sys

import pytest
import torch

from mechscope.cli import main
from mechscope.zoo.organisms import shapes_recipe


def test_train_shapes_whose_loss_turns_nan_exits_1_with_one_error_line(tmp_path, monkeypatch, capsys):
    real = shapes_recipe.multitask_loss

    def nan_loss(logits, labels, tasks):
        value, metrics = real(logits, labels, tasks)
        return value * torch.tensor(float("nan")), metrics

    monkeypatch.setattr(shapes_recipe, "multitask_loss", nan_loss)
    monkeypatch.setattr(sys, "argv", ["mechscope", "train", "shapes", "--out", str(tmp_path), "--steps", "2",
                                      "--batch-size", "4", "--threads", "1", "--census-every", "0"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]   # the rest: the progress bar
    assert len(lines) == 1, err
    assert lines[0].startswith("error: training diverged at step 1 of 2: the loss is not finite")
    assert "lower learning rate" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "checkpoint.pt").exists()
