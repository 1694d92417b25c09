import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.evidence.stats import UnitStats, activation_stats, load_stats, log_prob_plot, save_stats


class Tap(nn.Module):
    """A model whose layer ``tap`` outputs the input itself (expected stats are numpy's over the input)."""

    def __init__(self):
        super().__init__()
        self.tap = nn.Identity()
        self.after = nn.Linear(1, 1)  # never reached: capture stops after `tap`

    def forward(self, x):
        return self.after(self.tap(x))


def _batches(n=4, shape=(3, 5, 6, 7), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.5 for _ in range(n)]


def _per_channel(batches):
    """All values of each channel: [C, N]."""
    x = torch.cat(batches)
    return x.transpose(0, 1).reshape(x.shape[1], -1).numpy()


def test_moments_firing_min_max_equal_numpy():
    batches = _batches()
    s = activation_stats(Tap(), batches, ["tap"], bins=64, progress=False)["tap"]
    values = _per_channel(batches)
    assert s.channels == 5 and (s.count == 4 * 3 * 6 * 7).all()  # every spatial position is a sample
    np.testing.assert_allclose(s.mean, values.mean(1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.std, values.std(1), rtol=1e-12)
    np.testing.assert_allclose(s.fraction_firing, (values > 0).mean(1))
    np.testing.assert_array_equal(s.min, values.min(1))
    np.testing.assert_array_equal(s.max, values.max(1))
    assert (s.hist.sum(1) + s.underflow + s.overflow == s.count).all()


def test_dense_layer_counts_batch_only_and_conv_net_runs():
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(6, 4, generator=g) for _ in range(3)]
    s = activation_stats(nn.Sequential(nn.Identity()), batches, "0", bins=16, progress=False)["0"]
    values = _per_channel(batches)
    assert (s.count == 18).all()
    np.testing.assert_allclose(s.mean, values.mean(1), atol=1e-6)
    np.testing.assert_allclose(s.std, values.std(1), rtol=1e-5)
    # a conv net, with (indices, images) pairs as ImageFolder.batches yields them
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    images = [torch.rand(2, 3, 10, 10, generator=g) for _ in range(2)]
    stats = activation_stats(net, [([0, 1], images[0]), ([2, 3], images[1])], ["0", "1"], bins=8, progress=False)
    with torch.no_grad():
        pre = torch.cat([net[0](x) for x in images])
    pre = pre.transpose(0, 1).reshape(4, -1).double().numpy()
    np.testing.assert_allclose(stats["0"].mean, pre.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["1"].fraction_firing, (pre > 0).mean(1))
    assert (stats["1"].min >= 0).all() and list(stats) == ["0", "1"]


def test_merge_of_two_halves_equals_whole():
    batches = _batches(n=6)
    common = dict(bins=32, value_range=(-6.0, 7.0), progress=False)
    whole = activation_stats(Tap(), batches, "tap", **common)["tap"]
    first = activation_stats(Tap(), batches[:2], "tap", **common)["tap"]
    second = activation_stats(Tap(), batches[2:], "tap", **common)["tap"]
    merged = first.merge(second)
    for name in ("count", "positive", "hist", "underflow", "overflow", "min", "max"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name))
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(merged.std, whole.std, rtol=0, atol=1e-10)
    # stats from auto ranges differ and refuse to merge; value_range makes a resumed run mergeable
    auto = activation_stats(Tap(), batches[:1], "tap", bins=32, progress=False)["tap"]
    with pytest.raises(MechscopeError, match="value_range"):
        auto.merge(second)
    resumed = activation_stats(Tap(), batches[1:], "tap", bins=32, value_range={"tap": auto.value_range},
                               progress=False)["tap"]
    np.testing.assert_array_equal(auto.merge(resumed).count, whole.count)


def test_histogram_counts_and_quantiles_within_one_bin():
    batches = _batches(n=5)
    s = activation_stats(Tap(), batches, ["tap"], bins=100, progress=False)["tap"]
    values = _per_channel(batches)
    assert (s.hist.sum(1) + s.underflow + s.overflow == values.shape[1]).all()
    # the first batch fixed the range (with margins); samples of a normal this size land inside it
    assert (s.underflow + s.overflow).sum() == 0
    qs = [0.0, 0.01, 0.25, 0.5, 0.9, 1.0]
    estimate = s.quantile(qs)
    assert estimate.shape == (len(qs), 5)
    exact = np.quantile(values, qs, axis=1)
    assert (np.abs(estimate - exact) <= s.bin_width[None, :] + 1e-12).all()
    assert s.quantile(0.5, channel=2) == pytest.approx(estimate[3, 2])
    hist_edges = s.bin_edges(0)
    np.testing.assert_array_equal(s.hist[0], np.histogram(values[0], bins=hist_edges)[0])
    with pytest.raises(MechscopeError, match=r"\[0, 1\]"):
        s.quantile(1.5)


def test_out_of_range_values_fall_in_under_and_overflow():
    batches = [torch.zeros(1, 1, 2, 2), torch.tensor([[[[-5.0, 5.0], [0.2, 9.0]]]])]
    s = activation_stats(Tap(), batches, "tap", bins=10, value_range=(-1.0, 1.0), progress=False)["tap"]
    assert s.underflow.tolist() == [1] and s.overflow.tolist() == [2] and s.hist.sum() == 5
    assert s.min[0] == -5 and s.max[0] == 9
    assert s.quantile(1.0, channel=0) == 9.0 and s.quantile(0.0, channel=0) == -5.0


def test_sigma_is_distance_from_mean_in_std():
    s = activation_stats(Tap(), _batches(), "tap", progress=False)["tap"]
    value = 3.0
    assert s.sigma(1, value) == pytest.approx((value - s.mean[1]) / s.std[1])
    assert s.sigma(1, s.mean[1] + 2 * s.std[1]) == pytest.approx(2.0)
    np.testing.assert_allclose(s.sigma(0, np.array([s.mean[0], s.mean[0] - s.std[0]])), [0.0, -1.0], atol=1e-12)
    assert torch.allclose(s.sigma(0, torch.tensor([float(s.mean[0])], dtype=torch.float64)),
                          torch.zeros(1, dtype=torch.float64))
    with pytest.raises(MechscopeError, match="valid: 0..4"):
        s.sigma(5, 1.0)


def test_save_load_round_trip(tmp_path):
    stats = activation_stats(nn.Sequential(nn.Identity(), nn.ReLU()), _batches(n=2), ["0", "1"], bins=16,
                             progress=False)
    path = save_stats(stats, tmp_path / "sub" / "stats.npz")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["stats.npz"]  # no temp file left
    loaded = load_stats(path)
    assert list(loaded) == ["0", "1"]
    for name, s in stats.items():
        assert isinstance(loaded[name], UnitStats) and loaded[name].layer == name
        for field in ("count", "mean", "m2", "positive", "min", "max", "low", "high", "hist", "underflow", "overflow"):
            np.testing.assert_array_equal(getattr(loaded[name], field), getattr(s, field))
    with pytest.raises(MechscopeError, match="no stats file"):
        load_stats(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(MechscopeError, match="save_stats"):
        load_stats(tmp_path / "bad.npz")


def test_log_prob_plot_draws_log_density():
    stats = activation_stats(Tap(), _batches(), "tap", bins=40, progress=False)
    fig = log_prob_plot(stats, "tap", 2)
    assert isinstance(fig, Figure)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 1
    x, y = lines[0].get_data()
    s = stats["tap"]
    filled = s.hist[2] > 0
    assert np.isfinite(y[filled]).all() and np.isnan(y[~filled]).all()
    edges = s.bin_edges(2)
    expected = np.log(s.hist[2][filled] / (s.count[2] * np.diff(edges)[filled]))
    np.testing.assert_allclose(y[filled], expected)
    np.testing.assert_allclose(x, (edges[:-1] + edges[1:]) / 2)
    # the density integrates to one over the bins
    assert np.exp(y[filled]) @ np.diff(edges)[filled] == pytest.approx(1.0)
    fig.savefig(__import__("io").BytesIO(), format="png")  # renders with Agg, nothing shown
    with pytest.raises(MechscopeError, match="unknown layer"):
        log_prob_plot(stats, "tapp", 0)


def test_bad_arguments_say_what_is_valid():
    with pytest.raises(MechscopeError, match="layer names"):
        activation_stats(Tap(), _batches(n=1), "tap:3", progress=False)
    with pytest.raises(MechscopeError, match="no batches"):
        activation_stats(Tap(), [], "tap", progress=False)
    with pytest.raises(MechscopeError, match="unknown layer"):
        activation_stats(Tap(), _batches(n=1), "tapp", progress=False)
    with pytest.raises(MechscopeError, match="dataset_batches must yield"):
        activation_stats(Tap(), ["not a tensor"], "tap", progress=False)


def test_channel_chunks_give_the_same_stats(monkeypatch):
    import mechscope.vision.evidence.stats_kernels as stats_mod

    batches = _batches(n=2)
    whole = activation_stats(Tap(), batches, "tap", bins=20, progress=False)["tap"]
    monkeypatch.setattr(stats_mod, "_CHUNK", 300)  # 2 channels at a time for 3 * 6 * 7 = 126 values each
    chunked = activation_stats(Tap(), batches, "tap", bins=20, progress=False)["tap"]
    for name in ("count", "positive", "hist", "underflow", "overflow", "min", "max", "low", "high"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))
    np.testing.assert_allclose(chunked.mean, whole.mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(chunked.m2, whole.m2, rtol=1e-12)


def test_eval_mode_during_scan_and_modes_restored():
    seen = []
    model = Tap()
    model.tap.register_forward_hook(lambda m, i, o: seen.append(m.training))
    model.train()
    model.after.eval()  # a submodule the user froze keeps its own mode
    activation_stats(model, _batches(n=2), "tap", progress=False)
    assert seen == [False, False]
    assert model.training and model.tap.training and not model.after.training


def test_per_channel_value_range_and_constant_channel():
    x = torch.zeros(2, 2, 3, 3)
    x[:, 1] = torch.linspace(-1, 1, 18).reshape(2, 3, 3)
    s = activation_stats(Tap(), [x], "tap", bins=4, value_range={"tap": ([-1.0, -2.0], [1.0, 2.0])},
                         progress=False)["tap"]
    np.testing.assert_array_equal(s.low, [-1, -2])
    np.testing.assert_array_equal(s.bin_width, [0.5, 1.0])
    np.testing.assert_array_equal(s.hist, [[0, 0, 18, 0], [0, 9, 8, 1]])  # 1.0 opens the last bin
    assert s.std[0] == 0 and s.fraction_firing[0] == 0
    assert s.sigma(0, 1.0) == float("inf") and np.isnan(s.sigma(0, 0.0))
    auto = activation_stats(Tap(), [x], "tap", bins=4, progress=False)["tap"]
    assert auto.low[0] < 0 < auto.high[0]  # a constant channel still gets a range around its value
    with pytest.raises(MechscopeError, match="high > low"):
        activation_stats(Tap(), [x], "tap", value_range=(1.0, 1.0), progress=False)


def test_nan_and_inf_do_not_crash_the_histogram():
    x = torch.tensor([0.5, float("nan"), float("inf"), -float("inf"), 0.25]).reshape(1, 1, 5)
    s = activation_stats(Tap(), [x], "tap", bins=4, value_range=(0.0, 1.0), progress=False)["tap"]
    assert s.hist.sum() == 2 and s.underflow.tolist() == [1] and s.overflow.tolist() == [2]
    assert np.isnan(s.mean[0])


def test_float32_fast_path_agrees_with_the_exact_float64_path():
    from mechscope.vision.evidence.stats import _batch_stats

    g = torch.Generator().manual_seed(3)
    x = (torch.randn(16, 40, 9, 9, generator=g) * 3 + 100).float()  # a large mean: moments need the correction
    low, high = np.full(40, 94.0), np.full(40, 106.0)
    x[0, :, 0, 0] = 94.0  # exactly low: first bin
    x[0, :, 0, 1] = 106.0  # exactly high: last bin
    x[0, 0, 1, 1] = float(np.nextafter(np.float32(106.0), np.float32(200)))  # just above high: overflow
    x[0, 1, 1, 1] = float(np.nextafter(np.float32(94.0), np.float32(0)))  # just below low: underflow
    fast, exact = _batch_stats("l", x, low, high, 64), _batch_stats("l", x.double(), low, high, 64)
    for name in ("count", "positive", "min", "max", "underflow", "overflow"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(exact, name), err_msg=name)
    np.testing.assert_allclose(fast.mean, exact.mean, rtol=1e-9)  # float32 alone: ~1e-7
    np.testing.assert_allclose(fast.std, exact.std, rtol=1e-6)
    assert fast.hist[:, 0].min() >= 1 and fast.hist[:, -1].min() >= 1
    assert np.abs(fast.hist - exact.hist).sum() <= 4  # at most a few values within rounding of a bin edge
    assert fast.overflow[0] >= 1 and fast.underflow[1] >= 1
    x[2, 3, 4, 5] = float("nan")
    with_nan = _batch_stats("l", x, low, high, 64)
    assert with_nan.overflow[3] == exact.overflow[3] + 1 and np.isnan(with_nan.mean[3])
    assert with_nan.positive[3] == exact.positive[3] - 1


def test_fast_path_counts_under_and_overflow_exactly_when_the_range_is_narrow():
    from mechscope.vision.evidence.stats import _batch_stats

    g = torch.Generator().manual_seed(4)
    x = torch.randn(8, 30, 5, 5, generator=g)
    x[1, 2] = float("nan")
    x[2, 3, 0, 0], x[3, 4, 0, 0] = float("inf"), float("-inf")
    low, high = np.linspace(-0.5, 0.2, 30), np.linspace(0.3, 1.0, 30)  # most values fall outside
    fast, exact = _batch_stats("l", x, low, high, 16), _batch_stats("l", x.double(), low, high, 16)
    for name in ("count", "positive", "underflow", "overflow"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(exact, name), err_msg=name)
    assert np.abs(fast.hist - exact.hist).sum() <= 2
    assert (fast.hist.sum(1) + fast.underflow + fast.overflow == 200).all()
