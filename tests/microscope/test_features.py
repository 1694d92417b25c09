"""``microscope.features.build_features`` on a tiny random model and dictionary: the rows it writes equal what the
model and the SAE compute by brute force, it skips what is up to date, and bad input is refused by name."""

from __future__ import annotations

import html
import re

import pytest
import torch
from markupsafe import escape

from mechscope.dictionary.sae import SAEConfig, SparseAutoencoder
from mechscope.errors import MechscopeError
from mechscope.microscope import kinds
from mechscope.microscope.feature_view import bars_data, contexts_data, list_data
from mechscope.microscope.features import build_features, spread_by_density
from mechscope.microscope.site import render_index, render_layer, render_unit
from mechscope.store import open_store, read_rows
from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer

HOOK = "blocks.0.mlp.hook_post"
PWN = "<script>window.__pwned=1</script>"


class Letters:
    """Decodes id ``i`` as a letter; id 3 is a token made of HTML."""

    def decode(self, ids):
        return "".join(PWN if i == 3 else chr(97 + i) for i in ids)


def tiny():
    torch.manual_seed(0)
    model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=12, d_vocab=20,
                                               d_mlp=24), seed=0)
    sae = SparseAutoencoder(SAEConfig(d_in=24, n_latents=40, kind="topk", k=4, seed=1))
    with torch.no_grad():
        sae.b_enc.add_(0.05)   # a few more latents fire on random data
    tokens = torch.randint(0, 20, (10, 12), generator=torch.Generator().manual_seed(2))
    return model.eval(), sae.eval(), tokens


def _build(out, **kw):
    model, sae, tokens = tiny()
    args = dict(model_name="tiny", sae_name="tiny-sae", tokenizer=Letters(), k=3, context=2, links=4, bins=8,
                batch_size=4, progress=False)
    return build_features(out, model, sae, tokens, **{**args, **kw})


def _figures(out, layer):
    with open_store(out) as store:
        return {(r["channel"], r["kind"]): r["settings"] for r in read_rows(store, "figures", model="tiny", layer=layer)}


def test_rows_equal_brute_force(tmp_path):
    model, sae, tokens = tiny()
    assert _build(tmp_path, latents=[0, 7, 39]) == {"latents": {"built": 3, "skipped": 0},
                                                     "neurons": {"built": 24, "skipped": 0}}
    with torch.no_grad():
        acts = model.run_with_cache(tokens, [HOOK])[1][HOOK]            # [10, 12, 24]
        code = sae.encode(acts)                                         # [10, 12, 40]
    for layer, values, units in (("tiny-sae", code, [0, 7, 39]), (HOOK, acts, range(24))):
        rows = _figures(tmp_path, layer)
        assert {ch for ch, _ in rows if ch >= 0} == set(units)
        for u in units:
            settings = rows[(u, kinds.TOP_CONTEXTS.name)]
            unit = values[..., u].flatten()
            firing = int((unit > 0).sum()) if layer == "tiny-sae" else unit.numel()
            assert len(settings["windows"]) == min(3, firing)
            for rank, w in enumerate(settings["windows"]):
                row, pos = w["row"], w["position"]
                lo, hi = max(pos - 2, 0), min(pos + 3, 12)
                assert w["acts"] == pytest.approx(values[row, lo:hi, u].tolist(), abs=1e-3)
                assert w["peak"] == pos - lo and w["tokens"] == [Letters().decode([t]) for t in tokens[row, lo:hi]]
                assert w["value"] == pytest.approx(float(unit.sort(descending=True).values[rank]), abs=1e-4)
            freq = float((unit > 0).float().mean())
            assert rows[(u, kinds.DENSITY.name)]["score"] == pytest.approx(freq)
            assert sum(bars_data(rows[(u, kinds.ACTIVATION_HISTOGRAM.name)])["bars"][i]["count"]
                       for i in range(8)) == (int((unit > 0).sum()) if layer == "tiny-sae" else unit.numel())
    w_dec = sae.W_dec.detach()
    links = _figures(tmp_path, "tiny-sae")[(7, kinds.DECODER_NEURONS.name)]["units"]
    assert [x["unit"] for x in links] == [f"{HOOK}:{n}" for n in w_dec[7].abs().topk(4).indices.tolist()]
    neuron = _figures(tmp_path, HOOK)
    assert [x["unit"] for x in neuron[(5, kinds.LATENTS_WRITING.name)]["units"]] == [
        f"tiny-sae:{i}" for i in w_dec[:, 5].abs().topk(4).indices.tolist()]
    assert [x["unit"] for x in neuron[(5, kinds.LATENTS_READING.name)]["units"]] == [
        f"tiny-sae:{i}" for i in sae.W_enc.detach()[5].abs().topk(4).indices.tolist()]
    direction = w_dec[7] @ model.blocks[0].mlp.W_out.detach()
    top = (direction @ model.unembed.W_U.detach()).topk(4).indices.tolist()
    table = _figures(tmp_path, "tiny-sae")[(7, kinds.LOGIT_EFFECTS.name)]["table"]
    assert [r[0] for r in table["rows"]] == [repr(Letters().decode([t])) for t in top]


def test_second_build_skips_and_a_setting_rebuilds(tmp_path):
    _build(tmp_path, latents=[1, 2])
    assert _build(tmp_path, latents=[1, 2]) == {"latents": {"built": 0, "skipped": 2},
                                                 "neurons": {"built": 0, "skipped": 24}}
    assert _build(tmp_path, latents=[2, 3]) == {"latents": {"built": 1, "skipped": 1},
                                                 "neurons": {"built": 0, "skipped": 24}}
    entries = _figures(tmp_path, "tiny-sae")[(-1, kinds.FEATURE_LIST.name)]["entries"]
    assert [e[0] for e in entries] == [1, 2, 3]                   # the list holds every built latent
    assert _build(tmp_path, latents=[2], k=2)["latents"] == {"built": 1, "skipped": 0}


def test_select_spreads_over_live_latents_and_is_remembered(tmp_path):
    model, sae, tokens = tiny()
    counts = _build(tmp_path, select=5, neurons=[0])
    assert counts == {"latents": {"built": 5, "skipped": 0}, "neurons": {"built": 1, "skipped": 0}}
    built = sorted(ch for ch, kind in _figures(tmp_path, "tiny-sae") if ch >= 0 and kind == kinds.TOP_CONTEXTS.name)
    with torch.no_grad():
        freq = (sae.encode(model.run_with_cache(tokens, [HOOK])[1][HOOK]) > 0).double().mean((0, 1))
    assert built == spread_by_density(freq, 5) and all(freq[u] > 0 for u in built)
    assert _build(tmp_path, select=5, neurons=[0])["latents"] == {"built": 0, "skipped": 5}


def test_pages_show_the_tokens_as_text(tmp_path):
    _build(tmp_path, latents=list(range(40)))
    with open_store(tmp_path) as store:
        entries = read_rows(store, "figures", model="tiny", layer="tiny-sae", channel=-1)[0]["settings"]["entries"]
        page = render_unit(store, "tiny", "tiny-sae", next(e[0] for e in entries if e[1] > 0))
        layer = render_layer(store, "tiny", "tiny-sae")
        neurons = "".join(render_unit(store, "tiny", HOOK, n) for n in range(24))
        index = render_index(store)
    assert "40 with top contexts" in index and "24 with top contexts" in index and "with pictures" not in index
    assert 'class="tok peak"' in page and "rgba(230, 110, 0, 1.0)" in page
    assert PWN not in page + layer + neurons and html.escape(PWN, quote=False) in neurons   # escaped, as text
    assert layer.count('<li data-unit=') == len(entries) == 40
    assert 'id="feature-q"' in layer and 'id="grid"' not in layer
    assert re.search(r'href="(\.\./)+tiny/blocks\.0\.mlp\.hook_5Fpost/\d+\.html"', page)  # links to its neurons' pages


def test_bad_input_names_what_is_valid(tmp_path):
    model, sae, tokens = tiny()
    with pytest.raises(MechscopeError, match=r"no latent 40 in tiny-sae: valid latents are 0\.\.39"):
        _build(tmp_path, latents=[40])
    with pytest.raises(MechscopeError, match=r"no neuron -1 in blocks.0.mlp.hook_post: valid neurons are 0\.\.23"):
        _build(tmp_path, neurons=[-1])
    wrong = SparseAutoencoder(SAEConfig(d_in=16, n_latents=8, kind="topk", k=2))
    with pytest.raises(MechscopeError, match=r"d_in=16.*hook_post of tiny has width 24"):
        build_features(tmp_path, model, wrong, tokens, model_name="tiny", progress=False)
    with pytest.raises(MechscopeError, match="blocks.L.mlp.hook_post"):
        build_features(tmp_path, model, sae, tokens, model_name="tiny", hook="blocks.0.attn.hook_z", progress=False)
    with pytest.raises(MechscopeError, match="unknown hook"):
        build_features(tmp_path, model, sae, tokens, model_name="tiny", hook="blocks.3.mlp.hook_post", progress=False)
    with pytest.raises(MechscopeError, match="longer than the model's context"):
        build_features(tmp_path, model, sae, torch.zeros(2, 13, dtype=torch.long), model_name="tiny")
    with open_store(tmp_path) as store:
        assert not read_rows(store, "figures")                     # nothing written by a refused build


def test_malformed_payloads_are_not_shown():
    assert contexts_data({"windows": [{"tokens": ["a"], "acts": [1.0], "peak": 1, "value": 1.0}], "scale": 1}) is None
    assert contexts_data({"windows": [{"tokens": ["a"], "acts": ["x"], "peak": 0, "value": 1.0}], "scale": 1}) is None
    assert bars_data({"bars": {"edges": [0, 1], "counts": [1, 2]}}) is None
    assert list_data({"entries": [[1, 0.5, "a"]]}, str) is None
    assert list_data({"entries": [[1, 0.5, "a", "b"], [2, 0.1, "c", "d"]]},
                     lambda u: None if u == 2 else "1.html")[0]["unit"] == 1


def test_written_kinds_are_declared_and_captioned(tmp_path):
    """What test_kinds checks of the other builders: declared kinds with their fresh keys, a thumbnail kind as the
    layers' thumbnail, declared layer kinds, and each figure under its declared caption."""
    _build(tmp_path, latents=[1, 2])
    with open_store(tmp_path) as store:
        rows = read_rows(store, "figures")
        layers = read_rows(store, "layers")
        pages = {(r["layer"], r["channel"]): render_unit(store, "tiny", r["layer"], r["channel"])
                 for r in rows if r["channel"] >= 0}
    assert {r["kind"] for r in rows} == {k.name for k in (*kinds.FEATURE_KINDS, kinds.DECODER_NEURONS,
                                                          kinds.LATENTS_WRITING, kinds.LATENTS_READING,
                                                          kinds.FEATURE_LIST)}
    for r in rows:
        assert set(kinds.figure_kind(r["kind"]).fresh) <= set(r["settings"])
        if r["channel"] >= 0:
            assert f"<figcaption>{escape(kinds.CAPTIONS[r['kind']])}" in pages[(r["layer"], r["channel"])]
    assert {r["settings"]["kind"] for r in layers} == {kinds.NEURONS.name, kinds.LATENTS.name}
    assert all(kinds.figure_kind(r["settings"]["thumbnail"]).thumbnail for r in layers)
