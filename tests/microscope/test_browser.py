"""The Microscope in a real headless Chromium (Debian's ``chromium``, driven by Playwright for Python).

Both ways of browsing a store are walked as a reader would: the local server (``microscope.serve``) over HTTP and
the static export (``site.export``) opened from ``file://``.  From the index, click through to a layer, then a
unit, check that every image on each page really loaded (``naturalWidth > 0``), follow an upstream circuit link,
and use the index's search box.  A store holding HTML in its names and notes must render as text, never run.

Chromium: ``$MECHSCOPE_CHROMIUM``, else ``chromium`` on the PATH, else ``/usr/bin/chromium``.  Without it (or
without Playwright) the tests are skipped, unless ``MECHSCOPE_REQUIRE_BROWSER=1`` (CI) makes that a failure.
Screenshots go to ``$MECHSCOPE_TEST_ARTEFACTS`` (default ``<repo>/out/test-artefacts/browser/``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError as e:  # the tests skip (or fail under MECHSCOPE_REQUIRE_BROWSER=1) with the reason
    expect = sync_playwright = None
    PLAYWRIGHT_MISSING = f"Playwright for Python is not installed ({e})"
else:
    PLAYWRIGHT_MISSING = ""

from mechscope.images import png_bytes
from mechscope.microscope.serve import make_server
from mechscope.microscope.site import export, layer_url, slug, unit_url
from mechscope.store import open_store, put_png, put_rows, transaction

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 15_000  # any single wait; far above what a local page needs
CHANNELS = {"mixed3a": [0, 1], "mixed3b": [0, 1, 2]}  # the units built (feature visualizations etc.)
PWN = "<script>window.__pwned = 1</script>"
EVIL_MODEL = '<img src=x onerror="window.__pwned = 2">'
EVIL_LAYER = "l<b>ay</b>er"
EVIL_CAPTION = '<img src=x onerror="window.__pwned = 3">caption'
EVIL_NOTE = f"note {PWN}"


def _repo_root() -> Path:
    here = Path(__file__).resolve()
    return next((p for p in here.parents if (p / "pyproject.toml").is_file()), here.parents[2])


def _artefacts() -> Path:
    folder = Path(os.environ.get("MECHSCOPE_TEST_ARTEFACTS") or _repo_root() / "out" / "test-artefacts" / "browser")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _unavailable(reason: str) -> None:
    """Skip, or fail where the environment promises a browser (``MECHSCOPE_REQUIRE_BROWSER=1``, as in CI)."""
    if os.environ.get("MECHSCOPE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"MECHSCOPE_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _chromium() -> tuple[str | None, str]:
    """The Chromium executable, or ``None`` and why not."""
    env = os.environ.get("MECHSCOPE_CHROMIUM")
    if env:
        ok = os.path.isfile(env) and os.access(env, os.X_OK)
        return (env, "") if ok else (None, f"MECHSCOPE_CHROMIUM={env!r} is not an executable file")
    found = shutil.which("chromium")
    if found:
        return found, ""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium", ""
    return None, "no Chromium found (set MECHSCOPE_CHROMIUM, or install Debian's chromium package)"


# ---------------------------------------------------------------------------------------------------- stores

def _make_store(path: Path) -> Path:
    """A store of the bundled organisms: a few units of the shapes organism's mixed3a and mixed3b (feature
    visualizations, negatives and tuning curves of mixed3b's, dataset examples, statistics and the top example's
    attribution, mixed3b's upstream links into mixed3a and the downstream links back), the heads of attn-only-2l
    and the toy models of the superposition intro experiment (a short run)."""
    from mechscope.data.shapes import ShapesDataset
    from mechscope.microscope.build import build
    from mechscope.microscope.heads import build_heads
    from mechscope.microscope.options import DatasetEvidence, Evidence, Links
    from mechscope.microscope.toy import build_toy
    from mechscope.zoo.registry import bundled_tokenizer, load

    net = load("shapes", device="cpu")
    fast = {"steps": 8, "size": 64}
    # mixed3a only needs to be there (the upstream links land on it): no negatives, no tuning curves
    build(net, "shapes", ["mixed3a"], path, channels=CHANNELS, evidence=Evidence(negative=False, tuning=False, **fast),
          progress=False)
    build(net, "shapes", ["mixed3b"], path, channels=CHANNELS, evidence=Evidence(**fast),
          links=Links({"mixed3b": "mixed3a"}, k=2),
          dataset=DatasetEvidence(ShapesDataset(32, size=64, seed=0), "shapes:32", examples_k=1), progress=False)
    build_heads(load("attn-only-2l", device="cpu"), "attn-only-2l", path, tokenizer=bundled_tokenizer("attn-only-2l"),
                k=5, progress=False)
    build_toy(path, "intro", steps=50, k=1, progress=False)
    return path


def _make_hostile_store(path: Path) -> Path:
    """A hand-made store whose names, caption, note, table and links carry HTML (and a real PNG to show)."""
    torch.manual_seed(0)
    with open_store(path) as store:
        png = put_png(store, png_bytes(torch.rand(3, 16, 16)))
        key = {"model": EVIL_MODEL, "layer": EVIL_LAYER}
        with transaction(store):
            put_rows(store, "layers", [{**key, "channels": 2, "settings": {"kind": "vision"}}])
            put_rows(store, "figures", [
                {**key, "channel": 0, "kind": "featvis", "png": png, "settings": {"score": 1.0}},
                {**key, "channel": 1, "kind": "featvis", "png": png, "settings": {"score": 0.5}},
                {**key, "channel": 0, "kind": "upstream", "png": png,
                 "settings": {"caption": EVIL_CAPTION, "note": EVIL_NOTE,
                              "table": {"columns": [PWN], "rows": [[PWN]]},
                              "units": [{"unit": f"{EVIL_LAYER}:1", "weight": 0.5},
                                        {"unit": f"{PWN}:3", "weight": 0.1}]}},
            ])
    return path


@contextlib.contextmanager
def _serving(store: Path) -> Iterator[str]:
    server = make_server(store, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _sites(tmp: Path, store: Path) -> Iterator[dict[str, str]]:
    """``{"served": http URL, "file": file:// URL of the export}`` of ``store``, both ending in ``/``."""
    site = tmp / "site"
    counts = export(store, site)
    assert counts["pages"] > 1 and counts["pngs"] > 0, counts
    with _serving(store) as url:
        yield {"served": url, "file": site.resolve().as_uri() + "/"}


@pytest.fixture(scope="module")
def shapes_store(tmp_path_factory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a small, busy machine one thread is steadier than torch's spinning pool
    try:
        return _make_store(tmp_path_factory.mktemp("browser") / "store")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shapes_sites(tmp_path_factory, shapes_store) -> Iterator[dict[str, str]]:
    yield from _sites(tmp_path_factory.mktemp("browser-site"), shapes_store)


@pytest.fixture(scope="module")
def hostile_sites(tmp_path_factory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("browser-hostile")
    yield from _sites(tmp, _make_hostile_store(tmp / "store"))


# ---------------------------------------------------------------------------------------------------- browser

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module, closed even when a test fails."""
    if PLAYWRIGHT_MISSING:
        _unavailable(PLAYWRIGHT_MISSING)
    exe, why = _chromium()
    if exe is None:
        _unavailable(why)
    with sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(executable_path=exe, headless=True, args=LAUNCH_ARGS, timeout=60_000)
        except Exception as e:  # noqa: BLE001 - any launch failure means no browser here
            _unavailable(f"could not launch {exe}: {e}")
        try:
            yield chromium
        finally:
            chromium.close()


class Tab:
    """A page in a fresh browser context, recording JavaScript errors, failed requests and dialogs."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1100, "height": 800})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda e: self.problems.append(f"JavaScript error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} ({r.failure})"))
        self.page.on("response", self._response)
        self.page.on("dialog", self._dialog)

    def _response(self, response: Any) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def _dialog(self, dialog: Any) -> None:
        self.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser) -> Iterator[Tab]:
    t = Tab(browser)
    try:
        yield t
    finally:
        t.close()


def _images_loaded(page: Any, minimum: int = 1) -> list[str]:
    """Scroll every ``img`` of the page into view (they are ``loading="lazy"``), wait until each has finished
    loading and assert it decoded (``naturalWidth > 0``) -> the images' ``src``."""
    page.wait_for_load_state("load")
    images = page.locator("img")
    n = images.count()
    assert n >= minimum, f"{page.url}: {n} images, expected at least {minimum}"
    srcs, broken = [], []
    for i in range(n):
        img = images.nth(i)
        img.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete", arg=img.element_handle())   # loaded, or broken
        width, src = img.evaluate("img => [img.naturalWidth, img.getAttribute('src')]")
        srcs.append(src)
        if not width > 0:
            broken.append(src)
    assert not broken, f"{page.url}: images that did not load: {broken}"
    return srcs


def _screenshot(page: Any, name: str, full_page: bool = True) -> Path:
    path = _artefacts() / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, f"{path} is not a screenshot"
    return path


def _url_ends(page: Any, suffix: str) -> None:
    page.wait_for_url(re.compile(re.escape(suffix) + "$"))
    assert page.url.endswith(suffix), page.url


# ---------------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("mode", ["served", "file"])
def test_click_from_index_to_layer_unit_and_upstream_unit(browser, shapes_sites, tab, mode):
    page = tab.page
    page.goto(shapes_sites[mode] + "index.html" if mode == "file" else shapes_sites[mode])
    assert "Microscope" in page.title()
    assert page.locator("h1").inner_text() == "Microscope"
    assert page.locator("h2", has_text="shapes").count() == 1
    _screenshot(page, f"{mode}-index")

    # the index -> mixed3b, by clicking its link
    page.get_by_role("link", name="mixed3b", exact=True).click()
    _url_ends(page, "/shapes/mixed3b/index.html")
    assert page.locator("h1").inner_text().startswith("mixed3b")
    thumbs = page.locator("#grid a.cell img")
    assert thumbs.count() == len(CHANNELS["mixed3b"])      # the built units have thumbnails, the rest blanks
    assert page.locator("#grid a.cell").count() > thumbs.count()
    assert page.locator("#grid a.cell:visible").count() == thumbs.count()  # the others hidden until asked for
    page.locator("#show-empty").check()
    assert page.locator("#grid a.cell:visible").count() == page.locator("#grid a.cell").count()
    page.locator("#show-empty").uncheck()
    _images_loaded(page, minimum=len(CHANNELS["mixed3b"]))
    _screenshot(page, f"{mode}-layer")

    # sort the grid by curve-likeness (the tuning curves' score), then back by activation
    button = page.get_by_role("button", name="curve preference", exact=True)
    key = button.get_attribute("data-sort")
    button.click()
    built = page.locator(f"#grid a.cell[data-{key}]:not([data-{key}=''])")
    values = [float(v) for v in built.evaluate_all(f"cells => cells.map(c => c.getAttribute('data-{key}'))")]
    assert len(values) == len(CHANNELS["mixed3b"]) and values == sorted(values, reverse=True)
    first = page.locator("#grid a.cell").first.get_attribute(f"data-{key}")
    assert float(first) == max(values)                                # built units first, best first
    page.get_by_role("button", name="activation", exact=True).click()

    # the layer -> its best-scoring unit, by clicking its cell
    cell = page.locator("#grid a.cell:has(img)").first
    channel = int(cell.get_attribute("data-channel"))
    assert channel in CHANNELS["mixed3b"]
    cell.click()
    _url_ends(page, f"/shapes/mixed3b/{channel}.html")
    assert page.locator("h1").inner_text().startswith(f"mixed3b:{channel}")
    for kind in ("featvis", "featvis_negative", "tuning", "upstream", "attribution", "log_prob", "quilt"):
        assert page.locator(f"figure#{slug(kind)} img").count() == 1, f"no {kind} figure"  # ids are slugs
    assert page.locator(".examples img").count() >= 2              # top and bottom dataset examples
    assert page.locator("table.stats").count() == 1
    srcs = _images_loaded(page, minimum=9)
    assert all(s.startswith("../../png/") for s in srcs), srcs      # relative links, from both sites
    _screenshot(page, f"{mode}-unit")

    # the unit -> its strongest upstream unit, by clicking the link in the upstream figure's table
    link = page.locator("figure#upstream table.links a").first
    name = link.inner_text().strip()
    m = re.fullmatch(r"mixed3a:(\d+)", name)
    assert m, name
    link.click()
    _url_ends(page, f"/shapes/mixed3a/{m.group(1)}.html")
    assert page.locator("h1").inner_text().split()[0] == name
    back = page.locator("figure#downstream table.links a")            # and the circuit leads back
    assert f"mixed3b:{channel}" in back.all_inner_texts()
    _images_loaded(page, minimum=1)
    _screenshot(page, f"{mode}-upstream")
    assert not tab.problems, tab.problems


@pytest.mark.parametrize("mode", ["served", "file"])
def test_head_pages_walk_composition_to_earlier_heads(browser, shapes_sites, tab, mode):
    page = tab.page
    page.goto(shapes_sites[mode] + "index.html")
    page.locator("h2", has_text="attn-only-2l").wait_for()
    page.get_by_role("link", name="blocks.1.attn", exact=True).click()
    _url_ends(page, "/attn-only-2l/blocks.1.attn/index.html")
    assert page.locator("#grid a.cell img").count() == 4             # every head's attention pattern as thumbnail
    _images_loaded(page, minimum=4)

    # the grid is sorted by each head's strongest detector score: the organism's induction head 1.3 comes first
    cell = page.locator("#grid a.cell").first
    assert cell.get_attribute("data-channel") == "3" and "induction" in cell.inner_text()
    cell.click()
    _url_ends(page, "/attn-only-2l/blocks.1.attn/3.html")
    for kind in ("attention", "head_scores", "composition"):
        assert page.locator(f"figure#{slug(kind)} img").count() == 1, f"no {kind} figure"
    for kind in ("qk_pairs", "ov_pairs"):                             # token-pair tables
        assert page.locator(f"figure#{slug(kind)} table.data tr").count() == 6, kind
    _images_loaded(page, minimum=3)
    _screenshot(page, f"{mode}-head")

    link = page.locator("figure#composition table.links a").first     # strongest composition: a layer-0 head
    name = link.inner_text().strip()
    m = re.fullmatch(r"blocks\.0\.attn:(\d)", name)
    assert m, name
    link.click()
    _url_ends(page, f"/attn-only-2l/blocks.0.attn/{m.group(1)}.html")
    assert page.locator("h1").inner_text().split()[0] == name
    _images_loaded(page, minimum=2)
    assert not tab.problems, tab.problems


@pytest.mark.parametrize("mode", ["served", "file"])
def test_toy_model_pages(browser, shapes_sites, tab, mode):
    page = tab.page
    page.goto(shapes_sites[mode] + "index.html")
    page.get_by_role("link", name="intro", exact=True).click()
    _url_ends(page, "/superposition/intro/index.html")
    assert page.locator("figure img").count() >= 3                    # the experiment's own figures, layer-wide
    assert page.locator("figure#summary table.data tr").count() == 11  # a header and ten instances
    _images_loaded(page, minimum=13)                                  # and ten thumbnails
    _screenshot(page, f"{mode}-toy-layer")
    page.locator("#grid a.cell").first.click()
    page.wait_for_url(re.compile(r"/superposition/intro/\d+\.html$"))
    for kind in ("geometry", "gram", "norms"):
        assert page.locator(f"figure#{kind} img").count() == 1, f"no {kind} figure"
    assert page.locator("figure#metrics table.data tr").count() == 6  # a header and five features
    _images_loaded(page, minimum=3)
    _screenshot(page, f"{mode}-toy-unit")
    assert not tab.problems, tab.problems


@pytest.mark.parametrize("mode", ["served", "file"])
def test_index_search_box(browser, shapes_sites, tab, mode):
    page = tab.page
    index = shapes_sites[mode] + "index.html"
    page.goto(index)
    box = page.locator("#q")
    box.fill("mixed3b:999999")
    box.press("Enter")
    expect(page.locator("#msg")).to_contain_text("no such unit")
    assert page.url == index                                          # stayed put

    channel = CHANNELS["mixed3b"][-1]
    box.fill(f"mixed3b:{channel}")
    box.press("Enter")
    _url_ends(page, f"/shapes/mixed3b/{channel}.html")
    assert page.locator("h1").inner_text().startswith(f"mixed3b:{channel}")
    _images_loaded(page, minimum=4)

    page.goto(index)
    page.locator("#q").fill("mixed3a")                                # a layer name goes to the layer
    page.get_by_role("button", name="Go").click()
    _url_ends(page, "/shapes/mixed3a/index.html")
    _screenshot(page, f"{mode}-search")
    assert not tab.problems, tab.problems


@pytest.mark.parametrize("mode", ["served", "file"])
def test_html_in_store_text_is_shown_not_run(browser, hostile_sites, tab, mode):
    page = tab.page
    page.goto(hostile_sites[mode] + "index.html")
    assert page.locator("h2").first.inner_text() == EVIL_MODEL       # the model name, as text
    page.get_by_role("link", name=EVIL_LAYER, exact=True).click()
    _url_ends(page, "/" + layer_url(EVIL_MODEL, EVIL_LAYER))         # slugged names work as URLs in the browser
    assert page.locator("h1").inner_text().startswith(EVIL_LAYER)
    page.locator("#grid a.cell").first.click()                        # the best score: unit 0
    _url_ends(page, "/" + unit_url(EVIL_MODEL, EVIL_LAYER, 0))
    assert page.locator("h1").inner_text().startswith(f"{EVIL_LAYER}:0")

    figure = page.locator("figure#upstream")
    assert figure.locator("figcaption").inner_text().startswith(EVIL_CAPTION)
    assert figure.locator("p.note").inner_text() == EVIL_NOTE
    assert figure.locator("table.data").inner_text().count(PWN) == 2  # header and cell
    links = figure.locator("table.links")
    assert f"{PWN}:3" in links.inner_text()                           # unknown unit: plain text
    assert links.locator("a").all_inner_texts() == [f"{EVIL_LAYER}:1"]
    assert page.locator("script").count() == 0                        # the unit page has no script of its own
    assert page.locator("img[src='x']").count() == 0 and page.locator("b").count() == 0
    _images_loaded(page, minimum=2)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    _screenshot(page, f"{mode}-hostile")

    links.locator("a").first.click()
    _url_ends(page, "/" + unit_url(EVIL_MODEL, EVIL_LAYER, 1))
    assert page.locator("h1").inner_text().startswith(f"{EVIL_LAYER}:1")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert not tab.problems, tab.problems
