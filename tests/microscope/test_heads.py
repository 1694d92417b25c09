"""Transformer-head pages of the Microscope: ``mechscope.microscope.heads.build_heads`` and their rendering."""

from __future__ import annotations

import re

import pytest
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.microscope import site
from mechscope.microscope.heads import MAX_TOKENS, build_heads
from mechscope.store import open_store, read_rows
from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer

KINDS0 = {"attention", "head_scores", "qk_pairs", "ov_pairs"}
KINDS1 = KINDS0 | {"composition"}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(n_ctx: int = 16, seed: int = 0, n_layers: int = 2) -> AttnOnlyTransformer:
    return AttnOnlyTransformer(AttnOnlyConfig(n_layers=n_layers, d_model=16, n_heads=2, d_head=4, n_ctx=n_ctx,
                                              d_vocab=30), seed=seed)


class StubTokenizer:
    """30 tokens, some of them HTML; greedy longest-match encoding; id 0 is BOS."""

    VOCAB = ["<|bos|>", "<script>", "<b>", " the", " cat", "\n", " ", "&", "'", '"'] + list("abcdefghijklmnopqrst")
    bos_id = 0

    def encode(self, text: str) -> list[int]:
        ids, i = [], 0
        while i < len(text):
            best = max((t for t in self.VOCAB[1:] if text.startswith(t, i)), key=len)
            ids.append(self.VOCAB.index(best))
            i += len(best)
        return ids

    def decode(self, ids: list[int]) -> str:
        return "".join(self.VOCAB[int(i)] for i in ids)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("heads")
    counts = build_heads(tiny(), "tiny", out, k=4, progress=False)
    return out, counts


def test_rows_for_every_head_and_kind(tiny_store):
    out, counts = tiny_store
    assert counts == {"built": 4, "skipped": 0}
    with open_store(out) as store:
        layers = {r["layer"]: r for r in read_rows(store, "layers", model="tiny")}
        figures = read_rows(store, "figures", model="tiny")
    assert sorted(layers) == ["blocks.0.attn", "blocks.1.attn"]
    for row in layers.values():
        assert row["channels"] == 2
        assert row["settings"]["kind"] == "heads" and row["settings"]["thumbnail"] == "attention"
        assert row["settings"]["n_layers"] == 2 and row["settings"]["n_heads"] == 2
    kinds = {}
    for r in figures:
        kinds.setdefault((r["layer"], r["channel"]), set()).add(r["kind"])
    assert kinds == {("blocks.0.attn", 0): KINDS0, ("blocks.0.attn", 1): KINDS0,
                     ("blocks.1.attn", 0): KINDS1, ("blocks.1.attn", 1): KINDS1,
                     ("blocks.0.attn", -1): {"attention_view"}, ("blocks.1.attn", -1): {"attention_view"}}
    by = {(r["layer"], r["channel"], r["kind"]): r for r in figures}
    for (layer, h, kind), r in by.items():
        s = r["settings"]
        assert s["k"] == 4 and s["tokens"] == 15 and len(s["build"]) == 16   # n_ctx 16: [BOS] + 7 + 7
        assert (r["png"] is None) == (kind in ("qk_pairs", "ov_pairs", "attention_view")), (layer, h, kind)
        if kind in ("qk_pairs", "ov_pairs"):
            assert len(s["table"]["rows"]) == 4
            values = [row[2] for row in s["table"]["rows"]]
            assert values == sorted(values, reverse=True)
            assert all(isinstance(row[0], int) for row in s["table"]["rows"])   # no tokenizer: ids
        if kind == "attention":
            detectors = dict(by[(layer, h, "head_scores")]["settings"]["table"]["rows"])
            assert set(detectors) == {"previous_token", "induction", "duplicate_token"}
            assert s["score"] == max(detectors.values())
            assert detectors[s["score_name"]] == s["score"]
            assert "No tokenizer" in s["note"] and "random tokens" in s["caption"]
        if kind == "ov_pairs":
            assert s["score_name"] == "copying" and -1 <= s["score"] <= 1
    comp = by[("blocks.1.attn", 1, "composition")]["settings"]
    weights = [u["weight"] for u in comp["units"]]
    assert [u["unit"] for u in comp["units"]] and weights == sorted(weights, reverse=True)
    assert {u["unit"] for u in comp["units"]} == {"blocks.0.attn:0", "blocks.0.attn:1"}
    for row, link in zip(comp["table"]["rows"], comp["units"], strict=True):
        assert row[0] == link["unit"] and max(row[1:]) == pytest.approx(link["weight"])
    assert re.search(r"Random baseline 0\.\d+", comp["note"])


def test_unit_page_shows_tables_and_composition_links(tiny_store):
    out, _ = tiny_store
    with open_store(out) as store:
        html = site.render_unit(store, "tiny", "blocks.1.attn", 1)
        first = site.render_unit(store, "tiny", "blocks.0.attn", 0)
    for text in ("Detector scores", "<th>detector</th>", "previous_token", "induction", "duplicate_token",
                 "Top QK token pairs", "<th>query</th>", "Top OV token pairs", "<th>source</th>", "copying",
                 "Composition with heads of earlier layers", "Random baseline"):
        assert text in html, text
    page = site.unit_url("tiny", "blocks.1.attn", 1)
    for h0 in (0, 1):
        href = site.relative_url(page, site.unit_url("tiny", "blocks.0.attn", h0))
        assert href == f"../../tiny/blocks.0.attn/{h0}.html"
        assert f'<a href="{href}">blocks.0.attn:{h0}</a>' in html
    assert "Composition with heads" not in first and "Detector scores" in first
    assert html.count('<img src="../../png/') == 3   # attention, head scores, composition


def test_layer_page_thumbnails_sorted_by_score(tiny_store):
    out, _ = tiny_store
    with open_store(out) as store:
        html = site.render_layer(store, "tiny", "blocks.0.attn")
        scores = {r["channel"]: r["settings"]["score"]
                  for r in read_rows(store, "figures", model="tiny", layer="blocks.0.attn", kind="attention")}
    assert html.count('<img src="../../png/') == 2 and "2 heads" in html
    shown = [int(c) for c in re.findall(r'data-channel="(\d+)"', html)]
    assert shown == sorted(scores, key=lambda c: -scores[c])


def test_rerun_skips_and_changes_rebuild(tmp_path):
    model = tiny(n_layers=1)
    assert build_heads(model, "tiny", tmp_path, k=2, progress=False) == {"built": 2, "skipped": 0}
    with open_store(tmp_path) as store:   # an open Store works too
        assert build_heads(model, "tiny", store, k=2, progress=False) == {"built": 0, "skipped": 2}
    assert build_heads(model, "tiny", tmp_path, k=3, progress=False) == {"built": 2, "skipped": 0}
    assert build_heads(tiny(seed=1, n_layers=1), "tiny", tmp_path, k=3, progress=False) == {"built": 2, "skipped": 0}
    with open_store(tmp_path) as store:
        rows = read_rows(store, "figures", model="tiny", kind="qk_pairs")
    assert len(rows) == 2 and all(len(r["settings"]["table"]["rows"]) == 3 for r in rows)


def test_tokens_are_shown_escaped(tmp_path):
    tok = StubTokenizer()
    text = "the cat <b>bold <script>alert 'hi'\n" * 4
    model = tiny(n_ctx=64)
    build_heads(model, "toy <b>", tmp_path, tokenizer=tok, text=text, k=900, progress=False)   # every QK pair
    with open_store(tmp_path) as store:
        attention, = read_rows(store, "figures", model="toy <b>", layer="blocks.1.attn", channel=0,
                               kind="attention")
        qk, = read_rows(store, "figures", model="toy <b>", layer="blocks.1.attn", channel=0, kind="qk_pairs")
        html = site.render_unit(store, "toy <b>", "blocks.1.attn", 0)
    assert attention["settings"]["tokens"] == MAX_TOKENS and "truncated" in attention["settings"]["note"]
    cells = {c for row in qk["settings"]["table"]["rows"] for c in row[:2]}
    assert {"'<script>'", "'<b>'", "'\\n'", "' the'"} <= cells   # repr-escaped: whitespace is visible
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;" in html and "\\n" in html
    assert '<a href="../../toy_20_3Cb_3E/blocks.0.attn/1.html">' in html


@pytest.mark.parametrize(("model", "kwargs", "message"), [
    (nn.Linear(3, 3), {}, "not an attention-only transformer"),
    (None, {}, "not an attention-only transformer"),
    ("tiny", {"k": 0}, "k is the number of QK/OV token pairs"),
    ("tiny", {"k": 2.5}, "integer >= 1"),
    ("tiny", {"text": "", "tokenizer": StubTokenizer()}, "non-empty string"),
    ("tiny", {"text": "the cat"}, "needs a tokenizer"),
])
def test_bad_inputs_are_refused(tmp_path, model, kwargs, message):
    net = tiny() if model == "tiny" else model
    with pytest.raises(MechscopeError, match=message):
        build_heads(net, "tiny", tmp_path / "store", progress=False, **kwargs)
    if (tmp_path / "store").exists():
        with open_store(tmp_path / "store") as store:
            assert read_rows(store, "figures") == [] and read_rows(store, "layers") == []


def test_bundled_two_layer_organism(tmp_path):
    from mechscope.zoo.registry import bundled_card, bundled_tokenizer, load

    model = load("attn-only-2l", device="cpu", progress=False)
    tok = bundled_tokenizer("attn-only-2l")
    assert build_heads(model, "attn-only-2l", tmp_path, tokenizer=tok, k=5, progress=False) == {
        "built": 8, "skipped": 0}
    assert build_heads(model, "attn-only-2l", tmp_path, tokenizer=tok, k=5, progress=False) == {
        "built": 0, "skipped": 8}
    with open_store(tmp_path) as store:
        scores = {(r["layer"], r["channel"]): dict(r["settings"]["table"]["rows"])
                  for r in read_rows(store, "figures", model="attn-only-2l", kind="head_scores")}
        notes = {(r["layer"], r["channel"]): r["settings"]["note"]
                 for r in read_rows(store, "figures", model="attn-only-2l", kind="head_scores")}
        induction = {h: scores[("blocks.1.attn", h)]["induction"] for h in range(4)}
        best = max(induction, key=induction.__getitem__)
        html = site.render_unit(store, "attn-only-2l", "blocks.1.attn", best)
        attention, = read_rows(store, "figures", model="attn-only-2l", layer="blocks.1.attn", channel=best,
                               kind="attention")
        qk, = read_rows(store, "figures", model="attn-only-2l", layer="blocks.1.attn", channel=best,
                        kind="qk_pairs")
    card = bundled_card("attn-only-2l")["final"]
    assert best == 3 or induction[best] > 0.5
    assert induction[best] > 0.5
    for layer in (0, 1):   # the same probe as the organism card's
        for h in range(4):
            measured = scores[(f"blocks.{layer}.attn", h)]
            assert measured["induction"] == pytest.approx(card["induction"][layer][h], abs=0.01)
            assert measured["previous_token"] == pytest.approx(card["previous_token"][layer][h], abs=0.01)
    prev = max(range(4), key=lambda h: scores[("blocks.0.attn", h)]["previous_token"])
    assert "Classified as: previous_token" in notes[("blocks.0.attn", prev)]
    assert "Classified as: induction" in notes[("blocks.1.attn", best)]
    assert attention["settings"]["score_name"] == "induction" and attention["settings"]["tokens"] <= MAX_TOKENS
    assert "Sample text" in attention["settings"]["note"] and "truncated" not in attention["settings"]["note"]
    assert len(qk["settings"]["table"]["rows"]) == 5
    assert all(c[0] in "'\"" for row in qk["settings"]["table"]["rows"] for c in row[:2])   # decoded, repr'd
    for h0 in range(4):
        assert f'href="../../attn-only-2l/blocks.0.attn/{h0}.html"' in html
