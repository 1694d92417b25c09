"""Feature and neuron pages of mlp-1l and its dictionary in a real headless Chromium, served and exported.

A latent's page shows its top contexts as text with every token tinted by the stored activation (the peak token
outlined and fully tinted); its decoder's neuron links lead to the neuron's page and that page's links lead back;
the latents' layer page lists them and its search box filters the rows by token text and by index.  Store: the
bundled ``mlp-1l`` and ``mlp-1l-sae`` on 64 rows of the bundled held-out sample.  Browser fixtures:
``test_browser`` (skipped without Chromium unless ``MECHSCOPE_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from mechscope.microscope.features import build_features
from mechscope.microscope.kinds import DECODER_NEURONS, DENSITY, FEATURE_LIST, LATENTS_WRITING, TOP_CONTEXTS
from mechscope.microscope.site import export, layer_url, slug, unit_url
from mechscope.store import open_store, read_rows
from tests.microscope import test_browser as tb

browser = tb.browser
tab = tb.tab
MODEL, SAE, HOOK = "mlp-1l", "mlp-1l-sae", "blocks.0.mlp.hook_post"
LINKS = 8
TINT = (230, 110, 0)
TOLERANCE = 0.006   # alpha rounded to 3 decimals, and Chromium keeping alpha in 1/255 steps


def _pair(sae: Any, live: torch.Tensor) -> tuple[int, int]:
    """A live latent ``i`` and its decoder's strongest neuron ``n`` such that ``i`` is among the ``LINKS`` latents
    that write ``n`` most (so both pages link to each other)."""
    w = sae.W_dec.detach().abs()
    for i in live.tolist():
        n = int(w[i].argmax())
        if i in w[:, n].topk(LINKS).indices.tolist():
            return i, n
    raise AssertionError("no latent and neuron that link to each other")


@pytest.fixture(scope="module")
def feature_store(tmp_path_factory) -> tuple[Path, int, int]:
    from safetensors.torch import load_file

    from mechscope.zoo import dictionaries, registry
    from mechscope.zoo.organisms.mlp_sae_recipe import SAMPLE

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net, tokenizer = registry.load_language_model(MODEL)
        sae, _ = dictionaries.load_dictionary(SAE)
        tokens = load_file(str(registry.bundle_dir() / SAMPLE))["tokens"].long()[:64]
        with torch.no_grad():
            acts = net.run_with_cache(tokens, [HOOK])[1][HOOK]
            live = torch.nonzero((sae.encode(acts) > 0).sum((0, 1)) >= 3).flatten()
        latent, neuron = _pair(sae, live)
        latents = sorted({latent, *live[:60].tolist()})
        neurons = sae.W_dec.detach()[latent].abs().topk(LINKS).indices.tolist()
        path = tmp_path_factory.mktemp("browser-features") / "store"
        build_features(path, net, sae, tokens, model_name=MODEL, sae_name=SAE, tokenizer=tokenizer,
                       latents=latents, neurons=neurons, k=6, context=6, links=LINKS, progress=False)
        return path, latent, neuron
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def feature_sites(tmp_path_factory, feature_store) -> Iterator[dict[str, str]]:
    store = feature_store[0]
    site = tmp_path_factory.mktemp("browser-features-site") / "site"
    counts = export(store, site)
    assert counts["units"] > 60 and counts["pngs"] == 0, counts     # text pages: no pictures at all
    with tb._serving(store) as url:
        yield {"served": url, "file": site.resolve().as_uri() + "/"}


def _settings(store: Path, layer: str, channel: int, kind: str) -> dict[str, Any]:
    with open_store(store, create=False) as s:
        row, = read_rows(s, "figures", model=MODEL, layer=layer, channel=channel, kind=kind)
    return row["settings"]


def _alpha(colour: str) -> float:
    parts = [float(x) for x in re.findall(r"[\d.]+", colour)]
    alpha = parts[3] if len(parts) == 4 else 1.0
    assert alpha == 0 or tuple(round(x) for x in parts[:3]) == TINT, colour
    return alpha


@pytest.mark.parametrize("mode", ["served", "file"])
def test_feature_page_highlights_tokens_and_links_to_its_neurons_and_back(browser, feature_sites, feature_store,
                                                                         tab, mode):
    store, latent, neuron = feature_store
    stored = _settings(store, SAE, latent, TOP_CONTEXTS.name)
    page = tab.page
    page.goto(feature_sites[mode] + unit_url(MODEL, SAE, latent))
    contexts = page.locator(".context")
    assert contexts.count() == len(stored["windows"]) >= 3
    assert page.locator(".context .tok.peak").count() == len(stored["windows"])
    for c, w in enumerate(stored["windows"]):
        tokens = contexts.nth(c).locator(".tok")
        assert tokens.all_text_contents() == w["tokens"]                      # the window's tokens, as text
        alphas = [_alpha(x) for x in tokens.evaluate_all("ts => ts.map(t => getComputedStyle(t).backgroundColor)")]
        want = [min(max(a / stored["scale"], 0), 1) for a in w["acts"]]
        assert max(abs(x - y) for x, y in zip(alphas, want)) <= TOLERANCE, (c, alphas, want)
        peak = tokens.nth(w["peak"])
        assert "peak" in peak.get_attribute("class") and peak.is_visible()
    assert _alpha(contexts.nth(0).locator(".tok.peak").evaluate("t => getComputedStyle(t).backgroundColor")) \
        >= 1 - TOLERANCE                                                     # the top context's peak: full tint
    outline = contexts.nth(0).locator(".tok.peak").evaluate("t => getComputedStyle(t).outlineStyle")
    assert outline == "solid"
    assert page.locator(f"figure#{slug(DENSITY.name)} .bar.mark").count() == 1   # where it falls
    tb._screenshot(page, f"{mode}-feature-page")

    links = _settings(store, SAE, latent, DECODER_NEURONS.name)["units"]
    assert links[0]["unit"] == f"{HOOK}:{neuron}"
    page.locator(f"figure#{slug(DECODER_NEURONS.name)} a", has_text=re.compile(rf"^{re.escape(HOOK)}:{neuron}$")
                 ).click()
    tb._url_ends(page, unit_url(MODEL, HOOK, neuron))
    assert page.locator(".context .tok.peak").count() >= 1                  # the neuron's own contexts
    back = page.locator(f"figure#{slug(LATENTS_WRITING.name)} a", has_text=re.compile(rf"^{SAE}:{latent}$"))
    back.click()
    tb._url_ends(page, unit_url(MODEL, SAE, latent))
    assert not tab.problems, tab.problems


@pytest.mark.parametrize("mode", ["served", "file"])
def test_search_box_filters_the_feature_list(browser, feature_sites, feature_store, tab, mode):
    store, latent, _ = feature_store
    entries = _settings(store, SAE, -1, FEATURE_LIST.name)["entries"]
    page = tab.page
    page.goto(feature_sites[mode] + layer_url(MODEL, SAE))
    rows = page.locator("#feature-list > li")
    assert rows.count() == len(entries) and page.locator("#grid").count() == 0   # a list, no picture grid

    def shown() -> list[int]:
        return [int(u) for u in page.locator("#feature-list > li:not([hidden])").evaluate_all(
            "ls => ls.map(l => l.dataset.unit)")]

    mine = next(e for e in entries if e[0] == latent)
    word = re.search(r"'([^']*[A-Za-z]{2,}[^']*)'", mine[2] + " " + mine[3]).group(1).strip().lower()
    page.locator("#feature-q").fill(word)
    want = [e[0] for e in entries if word in f"{e[2]} → {e[3]}".lower()]
    assert latent in shown() and shown() == want and len(want) < len(entries), (word, want)
    assert page.locator("#feature-count").inner_text() == f"{len(want)} shown"
    page.locator("#feature-q").fill(str(latent))                             # an index: that latent alone
    assert shown() == [latent]
    page.locator("#feature-q").fill("no token has this text")
    assert shown() == [] and page.locator("#feature-count").inner_text() == "0 shown"
    page.locator("#feature-q").fill("")
    assert len(shown()) == len(entries)
    page.locator("#feature-q").fill(str(latent))
    page.locator(f"#feature-list > li[data-unit='{latent}'] a").click()
    tb._url_ends(page, unit_url(MODEL, SAE, latent))
    assert not tab.problems, tab.problems
