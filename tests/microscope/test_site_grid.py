"""Pages that lead with pictures, at full size: a layer page opens on its grid of a thousand feature
visualizations (lazy-loaded, with their size given), the layer-wide figures below it, and the index shows a
picture per layer (its best unit's) with the layer's counts.  Store: ``conftest.make_wide_store``."""

from __future__ import annotations

import html.parser
import time
from pathlib import Path

import pytest

from mechscope.microscope import site
from mechscope.store import open_store, read_rows
from tests.microscope.conftest import WIDE_UNITS, WITH_EXAMPLES, WITH_STATS, wide_score

LOG_PROB, FEATVIS = site.slug("log_prob"), site.slug("featvis")  # figure ids are slugs
MAX_LAYER_PAGE = 300_000  # bytes for 1,000 tiles: about 300 each (a link, an img, a label, the sort keys)


class Tags(html.parser.HTMLParser):
    """Every start tag of a page, in order, as ``(tag, attributes)``."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture
def store(wide_store):
    with open_store(wide_store, create=False) as s:
        yield s


def _pngs(store, layer: str, kind: str = "featvis") -> dict[int, str]:
    return {r["channel"]: r["png"] for r in read_rows(store, "figures", model="big", layer=layer, kind=kind)}


def test_a_thousand_unit_layer_page_opens_on_its_lazy_grid(store):
    start = time.perf_counter()
    page = site.render_layer(store, "big", "wide")
    seconds = time.perf_counter() - start
    size = len(page.encode("utf-8"))
    print(f"\nlayer page of {WIDE_UNITS} units: {size} bytes, rendered in {seconds * 1000:.0f} ms")
    assert size < MAX_LAYER_PAGE
    assert seconds < 10  # measured ~0.1 s; the bound only catches a page that went quadratic

    tags = Tags(page).tags
    cells = [a for t, a in tags if t == "a" and "cell" in (a.get("class") or "").split()]
    assert len(cells) == WIDE_UNITS
    channels = [int(a["data-channel"]) for a in cells]
    assert channels == sorted(range(WIDE_UNITS), key=wide_score, reverse=True)  # best first
    assert [float(a["data-s0"]) for a in cells] == [wide_score(c) for c in channels]

    grid = page[page.index('id="grid"'):page.index("</div>", page.index('id="grid"'))]
    imgs = [a for t, a in Tags(grid).tags if t == "img"]
    assert len(imgs) == WIDE_UNITS
    assert all(a.get("loading") == "lazy" and a.get("width") == a.get("height") == str(site.TILE_PX) for a in imgs)
    url = site.layer_url("big", "wide")
    featvis = _pngs(store, "wide")
    assert [a["src"] for a in imgs] == [site.relative_url(url, featvis[c]) for c in channels]  # the unit's own
    assert [a["alt"] for a in imgs] == [f"wide:{c}" for c in channels]
    assert [a["href"] for a in cells] == [site.relative_url(url, site.unit_url("big", "wide", c)) for c in channels]

    # the grid comes first; the layer-wide distribution below it, reached by a link above the grid
    assert page.index('id="grid"') < page.index('id="layer-figures"') < page.index(f'<figure id="{LOG_PROB}"')
    assert page.index('href="#layer-figures"') < page.index('id="grid"')
    assert page.count("<figure") == 1 and page.count("data:") == 0  # no inline images or per-unit figures


def test_unit_pages_carry_the_distributions(store):
    page = site.render_unit(store, "big", "wide", 3)
    assert f'<figure id="{LOG_PROB}"' in page and f'<figure id="{FEATVIS}"' in page
    assert page.index(f'<figure id="{FEATVIS}"') < page.index(f'<figure id="{LOG_PROB}"')
    assert "<th>fraction firing</th>" in page
    assert f'<figure id="{LOG_PROB}"' not in site.render_unit(store, "big", "wide", WITH_STATS)


def test_index_shows_each_layers_best_picture_and_counts(store):
    start = time.perf_counter()
    page = site.render_index(store)
    print(f"\nindex of 3 layers ({WIDE_UNITS + 8} units): {len(page)} bytes in "
          f"{(time.perf_counter() - start) * 1000:.0f} ms")
    tags = Tags(page).tags
    cards = [i for i, (t, a) in enumerate(tags) if t == "div" and a.get("class") == "layer"]
    assert len(cards) == 3
    pictures = {}
    for i in cards:
        href = tags[i + 1][1]["href"]
        img = tags[i + 2][1] if tags[i + 2][0] == "img" else None
        pictures[href] = img
    wide, small = _pngs(store, "wide"), _pngs(store, "small")
    best = max(range(WIDE_UNITS), key=wide_score)
    assert pictures[site.layer_url("big", "wide")]["src"] == wide[best]
    assert pictures[site.layer_url("big", "small")]["src"] == small[2]
    assert pictures[site.layer_url("big", "bare")] is None  # statistics only: a blank, no broken image
    for img in (pictures[site.layer_url("big", layer)] for layer in ("wide", "small")):
        assert img["loading"] == "lazy" and img["width"] == img["height"] == str(site.TILE_PX)
    assert f'title="picture: wide:{best}"' in page
    text = " ".join(page.split())
    assert (f"{WIDE_UNITS} units · vision<br>{WIDE_UNITS} with pictures<br>{WITH_EXAMPLES} with examples"
            f"<br>{WITH_STATS} with statistics") in text
    assert "3 units · vision<br>3 with pictures</span>" in text
    assert "5 units · vision<br>5 with statistics</span>" in text


def test_served_pages_are_the_rendered_ones(store):
    assert site.page_for_path(store, site.layer_url("big", "wide"))[0].decode() == site.render_layer(store, "big",
                                                                                                     "wide")
    assert site.page_for_path(store, "")[0].decode() == site.render_index(store)


def test_the_stylesheet_sizes_tiles_as_the_img_attributes_do():
    css = (Path(site.__file__).parent / "templates" / "style.css").read_text()
    for rule in (".cell img,.cell .blank{", ".layer img,.layer .blank{"):
        body = css[css.index(rule) + len(rule):].split("}", 1)[0]
        assert f"width:{site.TILE_PX}px;height:{site.TILE_PX}px" in body, rule
