"""The fast paths of feature_contexts give the same state as the plain ones: the top-k taken from only the values
that beat the k-th kept so far (neurons, directions and latents), the histogram (float bins, integer keys), windows cut only
for the survivors; and a changed batch size leaves the top-k, windows and firing counts unchanged."""

import math

import pytest
import torch
from torch import nn

from mechscope.dictionary.sae import SAEConfig, SparseAutoencoder
from mechscope.transformer import features
from mechscope.transformer.features import _bin_counts, _dense_counts, feature_contexts
from tests.transformer.test_features import brute

K, C = 4, 2


class Grid(nn.Module):
    """Activations that are exact whatever the batch (so any two batchings agree to the bit): unit u of token t at
    position p is a fixed pseudo-random integer / 8 (with ties), some negative."""

    def __init__(self, units: int = 24, vocab: int = 50):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = torch.randint(-20, 60, (vocab, units), generator=g).float() / 8
        self.pos = torch.randint(-4, 5, (64, units), generator=g).float() / 8
        self.hook = nn.Identity()

    def forward(self, t):
        return self.hook(self.table[t] + self.pos[: t.shape[1]])


def check(fc, expected):
    for u, (vals, idx, wins) in enumerate(expected):
        n = len(idx)
        assert fc.index[u, :n].tolist() == idx and (fc.index[u, n:] == -1).all(), u
        assert fc.values[u, :n].tolist() == vals and (fc.values[u, n:] == -math.inf).all(), u
        assert fc.windows[u, :n].tolist() == wins and (fc.windows[u, n:] == -1).all(), u


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 50, (40, 12), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def sae():
    s = SparseAutoencoder(SAEConfig(d_in=24, n_latents=60, kind="topk", k=3, seed=2))
    with torch.no_grad():
        s.b_enc.normal_(0, 0.3, generator=torch.Generator().manual_seed(3))
    return s.eval()


def test_the_floor_path_is_taken_and_equals_brute_force_at_every_batch_size(tokens, sae, monkeypatch):
    model = Grid()
    acts = model(tokens).reshape(-1, 24)
    calls = []
    real = features._sparse_top
    monkeypatch.setattr(features, "_sparse_top", lambda *a: calls.append(len(a[0])) or real(*a))
    dirs = torch.randn(5, 24, generator=torch.Generator().manual_seed(4)).round()
    with torch.no_grad():
        cases = [({}, acts, False), ({"units": dirs}, acts @ dirs.T, False), ({"sae": sae}, sae.encode(acts), True)]
    for kwargs, unit_acts, positive in cases:
        expected = brute(unit_acts, tokens, K, positive)
        states = []
        for bs in (1, 3, 7, 40):
            calls.clear()
            fc = feature_contexts(model, tokens, "hook", k=K, context=C, batch_size=bs, **kwargs)
            check(fc, expected)
            assert fc.fired.tolist() == (unit_acts > 0).sum(0).tolist()
            if bs < 40 and not kwargs.get("sae"):
                assert calls, "the batches after the first beat the floor sparsely: the sparse path must run"
            states.append(fc)
        for fc in states[1:]:   # a changed batch size: the same top-k, windows and firing counts
            for name in ("values", "index", "windows", "fired"):
                assert torch.equal(getattr(fc, name), getattr(states[0], name)), name
            assert torch.equal(fc.counts.sum(1), states[0].counts.sum(1))


@pytest.mark.parametrize("units, bins", [(7, 10), (1000, 40)])   # int16 keys, int32 keys
def test_the_dense_histogram_equals_the_per_element_rule(units, bins):
    g = torch.Generator().manual_seed(5)
    acts = torch.randn(300, units, generator=g) * 3
    edges = features._linear_edges(acts[:50], bins)
    lo, hi = edges[:, 0], edges[:, -1]
    b = ((acts - lo) * (bins / (hi - lo))).floor_().long().flatten()   # the per-element rule, clamped to the end bins
    expected = _bin_counts(units, bins, torch.arange(units).repeat(300), b)
    got = _dense_counts(acts.clone(), edges, bins)
    assert torch.equal(got, expected) and int(got.sum()) == 300 * units
    assert got[:, 0].sum() > 0 and got[:, -1].sum() > 0   # values outside the first batch's range land at the ends
