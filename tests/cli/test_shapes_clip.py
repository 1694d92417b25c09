import json

from typer.testing import CliRunner

from mechscope.cli import app


def test_train_shapes_clip_writes_weights_tokenizer_card_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["train", "shapes-clip", "--out", str(out), "--steps", "2", "--batch-size", "8", "--threads", "1",
            "--eval-items", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "shapes_clip.json").read_text())
    assert set(card["zeroshot_accuracy"]) == {"picture", "sketch", "word", "picture+word"}
    assert card["recipe"]["steps"] == 2 and (out / "shapes_clip.tokenizer.json").exists()
    assert "held-out zero-shot accuracy" in result.output
    before = (out / "shapes_clip.safetensors").read_bytes()
    again = CliRunner().invoke(app, args)          # resumes from the finished checkpoint: same weights
    assert again.exit_code == 0, again.output
    assert (out / "shapes_clip.safetensors").read_bytes() == before
