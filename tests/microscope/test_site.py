"""The Microscope's pages and static export, from a small hand-made store."""

from __future__ import annotations

import html.parser
import json
import os
import posixpath
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from mechscope.errors import MechscopeError
from mechscope.microscope import site
from mechscope.store import open_store, put_png, put_rows, read_rows, transaction
from mechscope.units import parse, parse_head

EVIL_LAYER = 'ev<script>alert("x")</script>\'l'
BASE = "http://host/site/"


def png(tag: str) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + tag.encode()


def build(root: Path) -> Path:
    """Two layers of model ``m`` (conv1: 3 units, mixed: 2), plus a layer with a hostile name."""
    with open_store(root) as store:
        p = {t: put_png(store, png(t)) for t in ("c0", "c1", "c2", "m0", "m1", "up", "down", "ex", "hist", "wide")}
        with transaction(store):
            put_rows(store, "layers", [
                {"model": "m", "layer": "conv1", "channels": 3, "settings": {"kind": "vision"}},
                {"model": "m", "layer": "mixed", "channels": 2, "settings": {"kind": "vision"}},
                {"model": "m", "layer": EVIL_LAYER, "channels": None, "settings": {"kind": "heads"}},
            ])
            put_rows(store, "figures", [
                {"model": "m", "layer": "conv1", "channel": 0, "kind": "featvis", "png": p["c0"],
                 "settings": {"score": 0.1, "score_name": "activation"}},
                {"model": "m", "layer": "conv1", "channel": 1, "kind": "featvis", "png": p["c1"],
                 "settings": {"score": 0.9, "score_name": "activation"}},
                {"model": "m", "layer": "conv1", "channel": 2, "kind": "featvis", "png": p["c2"],
                 "settings": {"score": 0.5, "score_name": "activation"}},
                {"model": "m", "layer": "conv1", "channel": -1, "kind": "quilt", "png": p["wide"], "settings": {}},
                {"model": "m", "layer": "conv1", "channel": 1, "kind": "downstream", "png": p["down"],
                 "settings": {"units": [{"unit": "mixed:1", "weight": 0.8}, {"unit": "gone:4", "weight": -0.2}]}},
                {"model": "m", "layer": "conv1", "channel": 1, "kind": "histogram", "png": p["hist"], "settings": {}},
                {"model": "m", "layer": "mixed", "channel": 0, "kind": "featvis", "png": p["m0"], "settings": {}},
                {"model": "m", "layer": "mixed", "channel": 1, "kind": "featvis", "png": p["m1"], "settings": {}},
                {"model": "m", "layer": "mixed", "channel": 1, "kind": "upstream", "png": p["up"],
                 "settings": {"units": [{"unit": "conv1:1", "weight": 0.8},
                                        {"unit": f"{EVIL_LAYER}:0", "weight": 0.1}]}},
                {"model": "m", "layer": EVIL_LAYER, "channel": 0, "kind": "featvis", "png": p["m0"], "settings": {}},
            ])
            put_rows(store, "examples", [
                {"model": "m", "layer": "conv1", "channel": 1, "which": w, "rank": r, "dataset_index": 10 * r + i,
                 "value": v, "x": 1, "y": 2, "png": p["ex"]}
                for i, (w, v0) in enumerate((("top", 7.25), ("bottom", -3.5))) for r, v in enumerate((v0, v0 / 2))
            ])
            put_rows(store, "stats", [{"model": "m", "layer": "conv1", "channel": 1, "count": 100, "mean": 0.123,
                                       "std": 1.5, "fraction_firing": 0.25, "min": -1.0, "max": 9.0}])
    return root


@pytest.fixture
def store(tmp_path):
    with open_store(build(tmp_path / "store"), create=False) as s:
        yield s


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("href", "src") and v is not None]


def links(page: str) -> list[str]:
    parser = Links()
    parser.feed(page)
    return parser.urls


def resolve(page_url: str, href: str) -> str:
    """The site-relative URL that ``href`` on the page at ``page_url`` points to."""
    full = urljoin(BASE + page_url, href)
    assert full.startswith(BASE), (page_url, href)
    return full[len(BASE):]


def test_urls_are_relative_and_safe():
    assert site.unit_url("m", "mixed3b", 379) == "m/mixed3b/379.html"
    assert site.layer_url("m", "mixed3b") == "m/mixed3b/index.html"
    for name in (EVIL_LAYER, "<b>x</b>", "..", ".", "", "a/b", "png", "PNG", "index.html", "a b?c#d%e", "ü:1"):
        s = site.slug(name)
        assert re.fullmatch(r"[A-Za-z0-9._-]+", s) and s not in (".", "..") and s.lower() not in ("png", "index.html")
    slugs = [site.slug(n) for n in ("a_b", "a_5Fb", "a.b", "_", "", "png", "_70ng")]
    assert len(set(slugs)) == len(slugs)
    with pytest.raises(MechscopeError):
        site.unit_url("m", "conv1", -1)
    assert resolve("m/a/1.html", site.relative_url("m/a/1.html", "m/b/2.html")) == "m/b/2.html"
    assert resolve("index.html", site.relative_url("index.html", "png/ab/x.png")) == "png/ab/x.png"


def test_index_lists_layers_with_search(store):
    page = site.render_index(store)
    hrefs = links(page)
    for layer in ("conv1", "mixed", EVIL_LAYER):
        assert site.layer_url("m", layer) in hrefs
    assert '<form id="search"' in page and "<script>alert" not in page and "</script>'" not in page
    assert page.count("</script>") == 1  # only the page's own script


def test_layer_page_links_units_sorted_by_score(store):
    page = site.render_layer(store, "m", "conv1")
    url = site.layer_url("m", "conv1")
    units = [resolve(url, h) for h in links(page) if h.endswith(".html") and "index" not in h]
    assert units == [site.unit_url("m", "conv1", c) for c in (1, 2, 0)]
    assert "activation 0.9" in page
    by_channel = site.render_layer(store, "m", "conv1", sort="channel")
    assert [resolve(url, h) for h in links(by_channel) if re.search(r"/\d+\.html$", resolve(url, h))] == \
        [site.unit_url("m", "conv1", c) for c in (0, 1, 2)]
    srcs = {resolve(url, h) for h in links(page) if h.endswith(".png")}
    featvis = {r["png"] for r in read_rows(store, "figures", model="m", layer="conv1")
               if r["kind"] in ("featvis", "quilt")}
    assert srcs == featvis
    with pytest.raises(MechscopeError, match="sort"):
        site.render_layer(store, "m", "conv1", sort="bogus")
    with pytest.raises(MechscopeError, match="no layer"):
        site.render_layer(store, "m", "nope")


def test_unit_page_figures_examples_stats_and_circuit_links(store):
    page = site.render_unit(store, "m", "conv1", 1)
    url = site.unit_url("m", "conv1", 1)
    targets = [resolve(url, h) for h in links(page)]
    rows = read_rows(store, "figures", model="m", layer="conv1", channel=1)
    assert {r["png"] for r in rows} <= set(targets)
    assert site.CAPTIONS["histogram"] in page and site.CAPTIONS["downstream"] in page
    assert "Top examples" in page and "Bottom examples" in page and "7.25" in page and "-3.5" in page
    assert "fraction firing" in page and "0.25" in page
    assert site.unit_url("m", "mixed", 1) in targets  # downstream link, resolved against the page
    assert "gone:4" in page and not any("gone" in t for t in targets)  # unknown unit: plain text
    up = site.render_unit(store, "m", "mixed", 1)
    up_url = site.unit_url("m", "mixed", 1)
    up_targets = [resolve(up_url, h) for h in links(up)]
    assert site.unit_url("m", "conv1", 1) in up_targets
    assert site.unit_url("m", EVIL_LAYER, 0) in up_targets
    with pytest.raises(MechscopeError, match="no unit"):
        site.render_unit(store, "m", "conv1", 3)


def test_hostile_names_are_escaped(store):
    pages = [site.render_index(store), site.render_layer(store, "m", EVIL_LAYER),
             site.render_unit(store, "m", EVIL_LAYER, 0), site.render_unit(store, "m", "mixed", 1)]
    for page in pages:
        assert "<script>alert" not in page and 'alert("x")' not in page
        for href in links(page):
            assert re.fullmatch(r"[A-Za-z0-9._/-]+", href), href
    assert "ev&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#39;l" in pages[1]


def test_export_writes_a_self_contained_site(tmp_path):
    store_dir = build(tmp_path / "store")
    out = tmp_path / "site"
    counts = site.export(store_dir, out)
    assert counts == {"layers": 3, "units": 6, "pages": 10, "pngs": 10}
    pages = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
    assert len(pages) == 10 and "index.html" in pages and site.unit_url("m", EVIL_LAYER, 0) in pages
    assert len(list(out.glob("png/*/*.png"))) == 10
    for rel in pages:
        for href in links((out / rel).read_text("utf-8")):
            target = urlsplit(urljoin(BASE + rel, href)).path[len(urlsplit(BASE).path):]
            assert (out / unquote(target)).is_file(), (rel, href)
            assert not posixpath.isabs(href) and "://" not in href
    assert site.export(store_dir, out) == counts  # again, over itself


def test_export_refuses_bad_folders(tmp_path):
    store_dir = build(tmp_path / "store")
    for bad in (store_dir, store_dir / "site", store_dir / "png"):
        with pytest.raises(MechscopeError, match="inside"):
            site.export(store_dir, bad)
    with pytest.raises(MechscopeError, match="no store"):
        site.export(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MechscopeError, match="no store"):
        site.export(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(MechscopeError, match="not a folder"):
        site.export(store_dir, tmp_path / "file")


def test_page_for_path_serves_pages_and_pngs_only(store):
    body, ctype = site.page_for_path(store, "")
    assert ctype.startswith("text/html") and b"conv1" in body
    assert site.page_for_path(store, "index.html")[0] == body
    assert site.page_for_path(store, "m/conv1/index.html")[1].startswith("text/html")
    assert site.page_for_path(store, "m/conv1/")[1].startswith("text/html")
    assert b"Top examples" in site.page_for_path(store, "m/conv1/1.html?x=1#top")[0]
    evil = site.layer_url("m", EVIL_LAYER)
    assert site.page_for_path(store, evil) is not None
    rel = read_rows(store, "figures", model="m", layer="conv1", channel=0)[0]["png"]
    assert site.page_for_path(store, rel) == (png("c0"), "image/png")
    hexa = "ab" + "0" * 62
    for bad in ("../index.sqlite", "/etc/passwd", "png/../index.sqlite", "png/ab/notahash.png",
                "%2e%2e/index.sqlite", "%2E%2E%2Findex.sqlite", "png/%2e%2e/index.sqlite", "index.sqlite",
                "png\\ab\\x.png", "index.html\x00", "%00", "//etc/passwd", f"png/ab/{hexa}.png",
                f"png/cd/{rel.split('/')[-1]}", "m/conv1/3.html", "m/conv1/01.html", "m/conv1/-1.html",
                "m/nope/index.html", "m/conv1", "./index.html", "m/./conv1/index.html", "C:/x", "%ff",
                "m/conv1/index.html/..", rel.upper(), "png/" + rel):
        assert site.page_for_path(store, bad) is None, bad


def test_index_search_script_maps_names_to_urls(store):
    if shutil.which("node") is None:   # CI (.ci/run) installs Debian's nodejs and requires it: a failure there
        reason = "needs node (Debian package nodejs) to run the index page's search script"
        if os.environ.get("MECHSCOPE_REQUIRE_NODE") == "1":
            pytest.fail(f"MECHSCOPE_REQUIRE_NODE=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    script = re.search(r"<script>(.*?)</script>", site.render_index(store), re.S).group(1)
    stub = "const document = {getElementById: () => ({addEventListener() {}})};\n"
    queries = ["conv1:2", " m/mixed:1 ", "mixed", "conv1:3", "conv1:01", "conv1:2@1,1", "conv1:2@1", "conv1:-1",
               "nope:1", f"{EVIL_LAYER}:0", f"{EVIL_LAYER}:1"]
    code = stub + script + f"\nconsole.log(JSON.stringify({json.dumps(queries)}.map(find)));"
    out = subprocess.run(["node", "-e", code], capture_output=True, text=True, timeout=20, check=True).stdout
    # the page reads names as units.parse does: "conv1:01" is channel 1, a position is allowed and leads to the unit
    assert parse("conv1:01") == parse("conv1:1") and parse("conv1:2@1,1").channel == 2
    assert json.loads(out) == [site.unit_url("m", "conv1", 2), site.unit_url("m", "mixed", 1),
                               site.layer_url("m", "mixed"), None, site.unit_url("m", "conv1", 1),
                               site.unit_url("m", "conv1", 2), None, None, None, site.unit_url("m", EVIL_LAYER, 0),
                               None]


def test_index_search_reads_heads_in_both_spellings(tmp_path):
    """The search box takes a head as ``L.H`` or ``blocks.L.attn:H``, the spellings ``units.parse_head`` reads."""
    if shutil.which("node") is None:
        if os.environ.get("MECHSCOPE_REQUIRE_NODE") == "1":
            pytest.fail("MECHSCOPE_REQUIRE_NODE=1 but node is missing", pytrace=False)
        pytest.skip("needs node (Debian package nodejs) to run the index page's search script")
    with open_store(tmp_path / "store") as st:
        with transaction(st):
            put_rows(st, "layers", [{"model": "lm", "layer": "blocks.1.attn", "channels": 4,
                                     "settings": {"kind": "heads"}}])
        script = re.search(r"<script>(.*?)</script>", site.render_index(st), re.S).group(1)
    stub = "const document = {getElementById: () => ({addEventListener() {}})};\n"
    queries = ["1.3", "blocks.1.attn:3", "lm/blocks.1.attn:2", "1.4", "0.1"]
    code = stub + script + f"\nconsole.log(JSON.stringify({json.dumps(queries)}.map(find)));"
    out = subprocess.run(["node", "-e", code], capture_output=True, text=True, timeout=20, check=True).stdout
    assert parse_head("1.3") == parse_head("blocks.1.attn:3")
    want = [site.unit_url("lm", "blocks.1.attn", c) for c in (3, 3, 2)] + [None, None]
    assert json.loads(out) == want


def test_tables_notes_captions_links_and_thumbnail_kinds(tmp_path):
    """Figures that are only a table or a note still show; any kind can carry links; a layer names its thumbnail."""
    with open_store(tmp_path / "store") as store:
        att = put_png(store, png("attention"))
        with transaction(store):
            put_rows(store, "layers", [
                {"model": "lm", "layer": "blocks.0.attn", "channels": 2, "settings": {"kind": "heads"}},
                {"model": "lm", "layer": "blocks.1.attn", "channels": 2,
                 "settings": {"kind": "heads", "thumbnail": "attention"}}])
            put_rows(store, "figures", [
                {"model": "lm", "layer": "blocks.1.attn", "channel": h, "kind": "attention", "png": att,
                 "settings": {"score": 0.5 + h / 4, "score_name": "induction"}} for h in (0, 1)] + [
                {"model": "lm", "layer": "blocks.1.attn", "channel": 1, "kind": "qk_pairs", "png": None,
                 "settings": {"table": {"columns": ["query", "key", "value"], "rows": [["'<b>'", "' x'", 1.23456]]},
                              "caption": "Custom <caption>", "note": "a note & more", "score": 2.5,
                              "score_name": "copying"}},
                {"model": "lm", "layer": "blocks.1.attn", "channel": 1, "kind": "composition", "png": None,
                 "settings": {"units": [{"unit": "blocks.0.attn:1", "weight": 0.25}]}},
                {"model": "lm", "layer": "blocks.1.attn", "channel": 1, "kind": "empty", "png": None,
                 "settings": {}},
            ])
        page = site.render_unit(store, "lm", "blocks.1.attn", 1)
        assert "<td>&#39;&lt;b&gt;&#39;</td>" in page and "<td>1.235</td>" in page  # cells escaped and formatted
        assert "Custom &lt;caption&gt;" in page and "a note &amp; more" in page
        assert "Top QK token pairs" not in page  # the caption of the row replaced the kind's
        here = site.unit_url("lm", "blocks.1.attn", 1)
        assert f'href="{site.relative_url(here, site.unit_url("lm", "blocks.0.attn", 1))}"' in page
        assert 'id="empty"' not in page  # nothing to show: not shown
        assert page.index('id="attention"') < page.index('id="composition"') < page.index('id="qk_5Fpairs"')
        grid = site.render_layer(store, "lm", "blocks.1.attn")
        assert grid.count(f'src="../../{att}"') == 2 and "induction 0.75" in grid
        assert grid.index('data-channel="1"') < grid.index('data-channel="0"')  # sorted by the thumbnail's score
        assert f'src="../../{att}"' not in site.render_layer(store, "lm", "blocks.0.attn")  # featvis by default
        # every score of the units' figures is a sort key: the thumbnail's first, then the others
        assert '<button type="button" data-sort="s0">induction</button>' in grid
        assert '<button type="button" data-sort="s1">copying</button>' in grid
        assert re.search(r'data-channel="1" data-s0="0.75" data-s1="2.5"', grid)
        assert re.search(r'data-channel="0" data-s0="0.5" data-s1=""', grid)


def test_quantiles_read_as_text_and_histogram_is_not_dumped(tmp_path):
    with open_store(tmp_path / "store") as store:
        with transaction(store):
            put_rows(store, "layers", [{"model": "m", "layer": "l", "channels": 1, "settings": {}}])
            put_rows(store, "stats", [{"model": "m", "layer": "l", "channel": 0, "count": 4, "mean": 0.5, "std": 1.0,
                                       "fraction_firing": 0.5, "min": 0.0, "max": 2.0,
                                       "quantiles": {"0.01": 0.0, "0.5": 0.25},
                                       "histogram": {"counts": [1, 2, 1]}}])
        page = site.render_unit(store, "m", "l", 0)
        grid = site.render_layer(store, "m", "l")
    assert "1%: 0 · 50%: 0.25" in page and "counts" not in page
    assert 'class="grid all"' in grid and 'id="show-empty"' not in grid  # no thumbnails at all: nothing hidden


def test_every_template_file_is_package_data():
    """An installed (non-editable) package has only the files pyproject's package-data names."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mechscope"]
    templates = root / "src" / "mechscope" / "microscope" / "templates"
    files = [p.relative_to(root / "src" / "mechscope").as_posix() for p in templates.iterdir() if p.is_file()]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files), files
