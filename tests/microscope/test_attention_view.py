"""The interactive attention view's payload (``mechscope.microscope.attention_view``): what ``build_heads`` stores
per layer of heads, and the JSON a head page embeds (escaped, so that a token never ends its ``<script>`` block)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.microscope import site
from mechscope.microscope.attention_view import DECIMALS, attention_payload, dense_patterns, page_data
from mechscope.microscope.heads import build_heads
from mechscope.microscope.kinds import ATTENTION_VIEW
from mechscope.store import open_store, read_rows
from mechscope.transformer.heads import attention_patterns
from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
from tests.microscope.test_heads import StubTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

PWN_SCRIPT = "</script><script>window.__pwned = 1</script>"
PWN_IMG = '<img src=x onerror="window.__pwned = 2">'


class HostileTokenizer(StubTokenizer):
    """30 tokens, some of them HTML that would run if a page did not escape it; greedy longest match; id 0 is BOS."""

    VOCAB = ["<|bos|>", PWN_SCRIPT, PWN_IMG, "</script>", "<b>", "&amp;", " the", " cat", "\n", " "] + list("abcdefghijklmnopqrst")


HOSTILE_TEXT = f"{PWN_SCRIPT} the<b> cat&amp;{PWN_IMG}</script> abc\n" * 2


def tiny(seed: int = 0) -> AttnOnlyTransformer:
    return AttnOnlyTransformer(AttnOnlyConfig(n_layers=2, d_model=16, n_heads=3, d_head=4, n_ctx=32, d_vocab=30),
                               seed=seed)


# ---------------------------------------------------------------------------------------------------- payload

def test_payload_rounds_to_three_decimals_and_trims_trailing_zeros():
    torch.manual_seed(0)
    scores = torch.randn(2, 6, 6).masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
    p = scores.softmax(-1)                                                  # causal: [heads 2, query 6, key 6]
    payload = attention_payload(p, [f"t{i}" for i in range(6)])
    assert payload["decimals"] == DECIMALS == 3 and payload["labels"] == [f"t{i}" for i in range(6)]
    assert len(payload["patterns"]) == 2 and all(len(head) == 6 for head in payload["patterns"])
    for h, head in enumerate(payload["patterns"]):
        for q, row in enumerate(head):
            assert len(row) == q + 1 or (len(row) <= q + 1 and round(float(p[h, q, len(row)]), 3) == 0)
            assert row == [round(float(v), 3) for v in p[h, q, :len(row)]]   # exactly the 3-decimal values
            assert all(len(repr(v).split(".")[-1]) <= 3 for v in row)       # no float noise in the JSON
    assert (dense_patterns(payload) - p).abs().max() <= 0.5e-3 + 1e-7       # the zeros put back
    assert dense_patterns(payload).shape == (2, 6, 6)


def test_payload_of_exact_values_is_small_json():
    p = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0004, 0.2, 0.7996]]])
    payload = attention_payload(p, ["a", "b", "c"])
    assert payload["patterns"] == [[[1], [0.5, 0.5], [0, 0.2, 0.8]]]
    assert json.dumps(payload["patterns"]) == "[[[1], [0.5, 0.5], [0, 0.2, 0.8]]]"


@pytest.mark.parametrize("patterns, labels, match", [
    (torch.ones(2, 3), ["a", "b"], "heads, query, key"),
    (torch.ones(1, 2, 3) / 3, ["a", "b"], "do not match the 2 tokens"),
    (torch.ones(1, 2, 2) / 2, ["a", "b", "c"], "do not match the 3 tokens"),
    (torch.full((1, 1, 1), 2.0), ["a"], "in \\[0, 1\\]"),
    (torch.full((1, 1, 1), float("nan")), ["a"], "finite"),
    (torch.ones(1, 1, 1), [1], "strings"),
])
def test_payload_refuses_what_is_not_a_layers_patterns(patterns, labels, match):
    with pytest.raises(MechscopeError, match=match):
        attention_payload(patterns, labels)


@pytest.mark.parametrize("settings", [
    None, {}, {"labels": [], "patterns": []}, {"labels": ["a"], "patterns": [[[1], [1]]]},
    {"labels": ["a", "b"], "patterns": [[[1], [0.5, 0.5, 0.1]]]}, {"labels": ["a"], "patterns": [[["1"]]]},
    {"labels": ["a"], "patterns": [[[float("nan")]]]}, {"labels": [1], "patterns": [[[1]]]},
    {"labels": ["a"], "patterns": [[[True]]]},
])
def test_a_page_shows_no_view_for_a_malformed_payload(settings):
    assert page_data(settings, 0, ["h:0"]) is None
    with pytest.raises(MechscopeError, match="not an attention view payload"):
        dense_patterns(settings)


def test_page_data_selects_the_pages_head():
    payload = attention_payload(torch.eye(2).expand(3, 2, 2), ["a", "b"])
    heads = ["l:0", "l:1", "l:2"]
    assert page_data(payload, 2, heads) == {"labels": ["a", "b"], "patterns": payload["patterns"], "head": 2,
                                            "heads": heads}
    assert page_data(payload, 7, heads)["head"] == 0
    assert page_data(payload, 0, heads[:2]) is None                         # one pattern per head, or no view


# ---------------------------------------------------------------------------------------------------- build_heads

@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("attention-view")
    model = tiny()
    counts = build_heads(model, "tiny", out, tokenizer=HostileTokenizer(), text=HOSTILE_TEXT, k=2, progress=False)
    return out, model, counts


def test_build_heads_stores_every_layers_patterns_on_the_sample(hostile_store):
    out, model, counts = hostile_store
    assert counts == {"built": 6, "skipped": 0}
    tok = HostileTokenizer()
    ids = [0] + tok.encode(HOSTILE_TEXT)
    want = attention_patterns(model, torch.tensor([ids]))[:, 0]             # [layers, heads, n, n]
    with open_store(out) as store:
        for layer in range(2):
            row, = read_rows(store, "figures", model="tiny", layer=f"blocks.{layer}.attn", kind=ATTENTION_VIEW.name)
            assert row["channel"] == -1 and row["png"] is None
            s = row["settings"]
            assert s["tokens"] == len(ids) == len(s["labels"]) and len(s["build"]) == 16
            assert s["labels"][1] == PWN_SCRIPT and PWN_IMG in s["labels"]   # tokens as they are, not escaped
            assert (dense_patterns(s) - want[layer]).abs().max() <= 0.5e-3 + 1e-6
            assert all(len(r) <= q + 1 for head in s["patterns"] for q, r in enumerate(head))   # causal: halved


def test_a_store_without_the_view_gets_it_without_rebuilding_its_heads(tmp_path):
    model = tiny(seed=1)
    build_heads(model, "tiny", tmp_path, k=2, progress=False)
    with open_store(tmp_path) as store:
        store.db.execute("DELETE FROM figures WHERE kind = ?", (ATTENTION_VIEW.name,))
        store.db.commit()
    assert build_heads(model, "tiny", tmp_path, k=2, progress=False) == {"built": 0, "skipped": 6}
    with open_store(tmp_path) as store:
        rows = read_rows(store, "figures", model="tiny", kind=ATTENTION_VIEW.name)
    assert sorted(r["layer"] for r in rows) == ["blocks.0.attn", "blocks.1.attn"]
    assert all(len(r["settings"]["labels"]) == r["settings"]["tokens"] for r in rows)   # no tokenizer: ids


# ---------------------------------------------------------------------------------------------------- pages

def _embedded(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="attention-data">(.*?)</script>', page, re.S)
    assert m, "no attention data block"
    return json.loads(m.group(1))


def test_head_page_embeds_the_layer_as_escaped_json_and_tokens_as_text(hostile_store):
    out, _, _ = hostile_store
    with open_store(out) as store:
        row, = read_rows(store, "figures", model="tiny", layer="blocks.1.attn", kind=ATTENTION_VIEW.name)
        page = site.render_unit(store, "tiny", "blocks.1.attn", 2)
        layer_page = site.render_layer(store, "tiny", "blocks.1.attn")
    data = _embedded(page)
    assert data["labels"] == row["settings"]["labels"] and data["patterns"] == row["settings"]["patterns"]
    assert data["head"] == 2 and data["heads"] == [f"blocks.1.attn:{h}" for h in range(3)]
    block = page.split('id="attention-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in block and ">" not in block and "&" not in block      # \u003c etc.: nothing ends the block
    assert page.count("<script") == 2 and page.count("</script>") == 2      # the data block and the view's code
    assert "<b>" not in page and "<img src=x" not in page
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned = 1&lt;/script&gt;</span>" in page    # a token, as text
    assert '<option value="2" selected>blocks.1.attn:2</option>' in page
    assert _embedded(layer_page)["head"] == 0                               # the layer page shows it too
    assert page.index('id="attention-view"') < page.index('<img src=')      # the view first, then the heatmap
