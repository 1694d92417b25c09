"""The head pages' interactive attention view in a real headless Chromium, served and exported.

Hovering over a token tints every token by the stored pattern of the selected head (each token's rendered
background alpha is compared with the store's row, within rounding); switching head shows that head's row without a
reload; the "attended from" toggle shows the column; a click pins a token; a token holding HTML or ``</script>``
renders as text and runs nothing.  Store: ``attn-only-2l`` with its bundled tokenizer, and a tiny model whose
tokenizer's tokens are HTML (``test_attention_view.HostileTokenizer``).  Browser fixtures: ``test_browser``
(skipped without Chromium unless ``MECHSCOPE_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from mechscope.microscope.attention_view import dense_patterns
from mechscope.microscope.heads import build_heads
from mechscope.microscope.kinds import ATTENTION_VIEW
from mechscope.microscope.site import layer_url, slug, unit_url
from mechscope.store import open_store, read_rows
from tests.microscope import test_browser as tb
from tests.microscope.test_attention_view import HOSTILE_TEXT, PWN_IMG, PWN_SCRIPT, HostileTokenizer, tiny

browser = tb.browser  # the module's headless Chromium and a fresh tab per test, as in test_browser
tab = tb.tab
MODEL, LAYER, HEAD = "attn-only-2l", "blocks.1.attn", 3   # the organism's induction head
TINT = (21, 88, 176)
TOLERANCE = 0.006  # the stored 3 decimals, and Chromium keeping alpha in 1/255 steps on some versions


@pytest.fixture(scope="module")
def attention_store(tmp_path_factory) -> Path:
    from mechscope.zoo.registry import bundled_tokenizer, load

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = tmp_path_factory.mktemp("browser-attention") / "store"
        build_heads(load(MODEL, device="cpu"), MODEL, path, tokenizer=bundled_tokenizer(MODEL), k=2, progress=False)
        build_heads(tiny(), "hostile", path, tokenizer=HostileTokenizer(), text=HOSTILE_TEXT, k=2, progress=False)
        return path
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def attention_sites(tmp_path_factory, attention_store) -> Iterator[dict[str, str]]:
    yield from tb._sites(tmp_path_factory.mktemp("browser-attention-site"), attention_store)


def _stored(store: Path, model: str, layer: str) -> tuple[list[str], torch.Tensor]:
    """The labels and ``[heads, query, key]`` patterns the store holds for a layer's view."""
    with open_store(store, create=False) as s:
        row, = read_rows(s, "figures", model=model, layer=layer, channel=-1, kind=ATTENTION_VIEW.name)
    return row["settings"]["labels"], dense_patterns(row["settings"])


def _alphas(page: Any) -> list[float]:
    """The rendered background alpha of every token of the view, in order (asserting the tint's colour)."""
    colours = page.locator("#attention-tokens .tok").evaluate_all(
        "ts => ts.map(t => getComputedStyle(t).backgroundColor)")
    alphas = []
    for c in colours:
        parts = [float(x) for x in re.findall(r"[\d.]+", c)]
        alpha = parts[3] if len(parts) == 4 else 1.0
        assert alpha == 0 or tuple(round(x) for x in parts[:3]) == TINT, c
        alphas.append(alpha)
    return alphas


def _assert_tints(page: Any, want: torch.Tensor, what: str) -> None:
    got = torch.tensor(_alphas(page))
    assert got.shape == want.shape, (what, got.shape, want.shape)
    worst = float((got - want).abs().max())
    assert worst <= TOLERANCE, f"{what}: tints differ from the stored pattern by up to {worst:.4f}"


@pytest.mark.parametrize("mode", ["served", "file"])
def test_hover_tints_tokens_by_the_stored_pattern_and_heads_switch(browser, attention_sites, attention_store, tab,
                                                                   mode):
    labels, patterns = _stored(attention_store, MODEL, LAYER)
    page = tab.page
    page.goto(attention_sites[mode] + unit_url(MODEL, LAYER, HEAD))
    view = page.locator("#attention-view")
    view.wait_for()
    tokens = page.locator("#attention-tokens .tok")
    assert tokens.all_inner_texts() == labels                          # the sample's tokens, as text
    assert page.locator("#attention-head").input_value() == str(HEAD)  # the page's head is selected first
    assert page.locator(f"figure#{slug('attention')} img").count() == 1   # the heatmap is still there
    assert max(_alphas(page)) == 0                                      # nothing tinted before a hover

    n = len(labels)
    j = n - 10            # a query in the repeat, where the induction head attends to the token after its copy
    tokens.nth(j).hover()
    _assert_tints(page, patterns[HEAD, j], f"head {HEAD}, query {j}")
    assert float(patterns[HEAD, j].max()) > 0.3                        # a real, visible pattern, not all faint
    assert f"{LAYER}:{HEAD}" in page.locator("#attention-status").inner_text()
    tb._screenshot(page, f"{mode}-attention-hover")

    page.locator("#attention-head").select_option("1")                # another head of the layer, no reload
    _assert_tints(page, patterns[1, j], f"head 1, query {j}")
    page.locator("input[name='attention-direction'][value='from']").check()   # the column: who attends to j
    _assert_tints(page, patterns[1, :, j], f"head 1, key {j}")        # (the last hovered token stays shown)
    k = int(patterns[1, :, 1:].amax(0).argmax()) + 1                 # the key head 1 attends to most (not BOS)
    assert float(patterns[1, :, k].max()) > 0.3
    tokens.nth(k).hover()
    _assert_tints(page, patterns[1, :, k], f"head 1, key {k}")
    page.locator("input[name='attention-direction'][value='to']").check()
    _assert_tints(page, patterns[1, k], f"head 1, query {k}")

    tokens.nth(j).click()                                              # pinned: other hovers do not move it
    tokens.nth(5).hover()
    _assert_tints(page, patterns[1, j], f"head 1, pinned query {j}")
    assert page.locator("#attention-tokens .tok.selected").get_attribute("data-i") == str(j)
    page.locator("#attention-head").select_option(str(HEAD))
    _assert_tints(page, patterns[HEAD, j], f"head {HEAD}, pinned query {j}")
    tokens.nth(j).click()                                              # unpinned: hovers move it again
    tokens.nth(5).hover()
    _assert_tints(page, patterns[HEAD, 5], f"head {HEAD}, query 5")
    page.locator("h1").hover()                                         # leaving the tokens keeps the last one
    _assert_tints(page, patterns[HEAD, 5], f"head {HEAD}, query 5, pointer elsewhere")
    page.keyboard.press("Escape")                                      # and Escape clears the tints
    assert max(_alphas(page)) == 0
    assert page.url.endswith(unit_url(MODEL, LAYER, HEAD))             # all of it without leaving the page
    assert not tab.problems, tab.problems


@pytest.mark.parametrize("mode", ["served", "file"])
def test_layer_page_shows_the_view_with_its_first_head(browser, attention_sites, attention_store, tab, mode):
    labels, patterns = _stored(attention_store, MODEL, "blocks.0.attn")
    page = tab.page
    page.goto(attention_sites[mode] + layer_url(MODEL, "blocks.0.attn"))
    assert page.locator("#attention-head").input_value() == "0"
    page.locator("#attention-tokens .tok").nth(7).click()
    _assert_tints(page, patterns[0, 7], "layer page, head 0, query 7")
    assert not tab.problems, tab.problems


@pytest.mark.parametrize("mode", ["served", "file"])
def test_tokens_with_html_render_as_text_and_run_nothing(browser, attention_sites, attention_store, tab, mode):
    labels, patterns = _stored(attention_store, "hostile", LAYER)
    assert PWN_SCRIPT in labels and PWN_IMG in labels and "</script>" in labels
    page = tab.page
    page.goto(attention_sites[mode] + unit_url("hostile", LAYER, 1))
    tokens = page.locator("#attention-tokens .tok")
    assert tokens.all_inner_texts() == labels                          # shown as the tokens they are
    assert page.locator("script").count() == 2                         # the data block and the view's code only
    assert page.locator("#attention-tokens *:not(.tok)").count() == 0  # no element made of a token
    assert page.locator("img[src='x']").count() == 0 and page.locator("b").count() == 0
    j = labels.index(PWN_IMG, 10)
    tokens.nth(j).hover()                                              # the data block parsed: the view works
    _assert_tints(page, patterns[1, j], f"hostile head 1, query {j}")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    tb._screenshot(page, f"{mode}-attention-hostile")
    assert not tab.problems, tab.problems
