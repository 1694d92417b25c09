"""The transformer verbs read a head in either spelling of ``units``: ``L.H`` or ``blocks.L.attn:H``."""

import json

from typer.testing import CliRunner

from mechscope.cli import app
from mechscope.errors import MechscopeError

runner = CliRunner()


def test_ov_takes_the_short_and_the_long_head_name_alike():
    outputs = []
    for head in ("1.2", "blocks.1.attn:2"):
        r = runner.invoke(app, ["ov", "attn-only-2l", head, "--weights", "random", "--top", "3", "--json"])
        assert r.exit_code == 0, r.output
        payload = json.loads(r.output)
        assert payload.pop("head") == head  # echoed as given
        outputs.append(payload)
    assert outputs[0] == outputs[1]


def test_a_head_of_another_naming_is_refused_with_the_valid_forms():
    r = runner.invoke(app, ["qk", "attn-only-2l", "attn:1", "--weights", "random"])
    assert isinstance(r.exception, MechscopeError) and "blocks.L.attn" in str(r.exception)
