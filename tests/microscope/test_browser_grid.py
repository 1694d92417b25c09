"""The Microscope's picture-first pages in a real headless Chromium, served and exported, at full size.

The index shows a picture per layer that loads; a layer of a thousand units opens on its grid, whose tiles near
the top load while those far below are not fetched until the reader scrolls to them (``loading="lazy"``); the
layer-wide figures come after the grid; clicking a tile opens the unit's page.  Store: ``conftest.wide_store``;
browser fixtures: ``test_browser`` (skipped without Chromium unless ``MECHSCOPE_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mechscope.microscope.site import layer_url, unit_url
from tests.microscope import test_browser as tb
from tests.microscope.conftest import WIDE_UNITS, wide_score

browser = tb.browser  # the module's headless Chromium and a fresh tab per test, as in test_browser
tab = tb.tab
TOP = 8  # tiles of the first row(s): in view at once in a 1100 x 800 window

_LOADED = "img => img.complete && img.naturalWidth > 0"


@pytest.fixture(scope="module")
def wide_sites(tmp_path_factory, wide_store) -> Iterator[dict[str, str]]:
    yield from tb._sites(tmp_path_factory.mktemp("browser-wide"), wide_store)


def _state(page: Any, selector: str) -> list[list[Any]]:
    """``[complete, naturalWidth]`` of every ``img`` matched by ``selector``, in document order."""
    return page.locator(selector).evaluate_all("imgs => imgs.map(i => [i.complete, i.naturalWidth])")


@pytest.mark.parametrize("mode", ["served", "file"])
def test_index_shows_a_picture_per_layer_that_loads(browser, wide_sites, tab, mode):
    page = tab.page
    page.goto(wide_sites[mode] + "index.html")
    page.wait_for_load_state("load")
    cards = page.locator("div.layer")
    assert cards.count() == 3
    for layer in ("wide", "small"):
        img = page.locator("div.layer", has=page.get_by_role("link", name=layer, exact=True)).locator("img")
        assert img.count() == 1, layer
        img.scroll_into_view_if_needed()
        page.wait_for_function(_LOADED, arg=img.element_handle())
        assert img.evaluate("i => [i.width, i.height]") == [128, 128]
    best = max(range(WIDE_UNITS), key=wide_score)
    assert page.locator("div.layer", has_text="wide").get_attribute("title") == f"picture: wide:{best}"
    bare = page.locator("div.layer", has=page.get_by_role("link", name="bare", exact=True))
    assert bare.locator("img").count() == 0 and bare.locator(".blank").count() == 1
    assert "5 with statistics" in bare.inner_text()
    tb._screenshot(page, f"{mode}-grid-index")

    page.get_by_role("link", name="wide", exact=True).click()
    tb._url_ends(page, "/" + layer_url("big", "wide"))
    assert not tab.problems, tab.problems


@pytest.mark.parametrize("mode", ["served", "file"])
def test_a_thousand_tiles_load_as_they_are_scrolled_to(browser, wide_sites, tab, mode):
    page = tab.page
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url) if r.url.endswith(".png") else None)
    page.goto(wide_sites[mode] + layer_url("big", "wide"))
    page.wait_for_load_state("load")
    tiles = "#grid a.cell img"
    assert page.locator(tiles).count() == WIDE_UNITS
    order = sorted(range(WIDE_UNITS), key=wide_score, reverse=True)
    assert page.locator("#grid a.cell").first.get_attribute("data-channel") == str(order[0])

    # the first tiles load; the grid comes before the layer-wide figure
    page.wait_for_function(f"() => Array.from(document.querySelectorAll('{tiles}')).slice(0, {TOP})"
                           f".every({_LOADED})")
    grid_bottom = page.locator("#grid").evaluate("g => g.getBoundingClientRect().bottom")
    assert page.locator("#layer-figures").evaluate("s => s.getBoundingClientRect().top") >= grid_bottom
    assert grid_bottom > 10_000  # a thousand tiles: far below any lazy-loading margin

    # the tiles far below are not loaded, nor even fetched
    page.wait_for_timeout(500)  # let any eager loading show itself
    state = _state(page, tiles)
    loaded = sum(1 for complete, width in state if complete and width > 0)
    fetched = len(requested)
    print(f"\n{mode}: before scrolling {loaded} of {WIDE_UNITS} tiles loaded, {fetched} PNGs requested")
    assert TOP <= loaded < WIDE_UNITS // 2
    assert state[-1] == [False, 0]
    assert fetched < WIDE_UNITS // 2

    # scrolled to the end, the last tile loads
    last = page.locator(tiles).last
    last.scroll_into_view_if_needed()
    page.wait_for_function(_LOADED, arg=last.element_handle())
    after = _state(page, tiles)
    print(f"{mode}: after scrolling to the end {sum(1 for c, w in after if c and w > 0)} tiles loaded")
    assert after[-1][1] == 24  # the PNG's own width
    tb._screenshot(page, f"{mode}-grid-end", full_page=False)

    # clicking a tile opens its unit's page
    channel = order[-1]
    cell = page.locator(f"#grid a.cell[data-channel='{channel}']")
    assert cell.inner_text().split() == [str(channel), "·", "activation", f"{wide_score(channel):g}"]
    cell.click()
    tb._url_ends(page, "/" + unit_url("big", "wide", channel))
    assert page.locator("h1").inner_text().startswith(f"wide:{channel}")
    assert not tab.problems, tab.problems
