import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mechscope.data.folders import ImageFolder
from mechscope.errors import MechscopeError
from mechscope.store import open_store, read_rows
from mechscope.vision.evidence.examples import dataset_examples, example_crops
from mechscope.vision.evidence.scan import load_scan_state, scan, skipped_summary
from mechscope.vision.evidence.scan_store import save_scan
from mechscope.vision.evidence.stats import _ARRAYS, activation_stats

SIZE = 12
LAYERS = ["1", "2", "5"]  # [B, 4, 12, 12] after ReLU, [B, 5, 6, 6] conv, [B, 3] linear


def _net(seed=0):
    """Small integer weights on small integer images: every activation is exact, so results compare equal."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2, padding=1),
                        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(5, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randint(-2, 3, p.shape, generator=g).float())
    return net


class Images:
    """An in-memory dataset with ImageFolder's interface; item i has dataset index 2 * i (gaps, as around skipped
    files); ``fail_after`` batches raises KeyboardInterrupt (an interrupted scan)."""

    def __init__(self, n=40, seed=0, fail_after=None):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 4, (n, 3, SIZE, SIZE), generator=g).float() / 4  # exact binary fractions
        self.fail_after, self.skipped = fail_after, []

    def __len__(self):
        return 2 * len(self.x)

    def __getitem__(self, index):
        return self.x[index // 2]

    def batches(self, batch_size, start=0):
        for n, s in enumerate(range((start + 1) // 2, len(self.x), batch_size)):
            if self.fail_after is not None and n == self.fail_after:
                raise KeyboardInterrupt
            idx = list(range(s, min(s + batch_size, len(self.x))))
            yield [2 * i for i in idx], self.x[idx]


def _assert_same(a, b):
    assert (a.layers, a.seen, a.next_start, a.bins, a.settings) == (b.layers, b.seen, b.next_start, b.bins, b.settings)
    for layer in a.layers:
        for name, t in a.examples[layer].tensors().items():
            assert torch.equal(t, b.examples[layer].tensors()[name]), (layer, name)
        for name in _ARRAYS:
            np.testing.assert_array_equal(getattr(a.stats[layer], name), getattr(b.stats[layer], name), err_msg=name)
        assert torch.equal(a.sample.values[layer], b.sample.values[layer])
        assert torch.equal(a.sample.pos[layer], b.sample.pos[layer])
    assert torch.equal(a.sample.index, b.sample.index) and torch.equal(a.sample.key, b.sample.key)


def test_interrupted_scan_resumed_equals_uninterrupted(tmp_path):
    net, ckpt = _net(), tmp_path / "scan.npz"
    whole = scan(net, Images(), LAYERS, k=4, bins=16, sample=6, batch_size=3, progress=False)
    with pytest.raises(KeyboardInterrupt):
        scan(net, Images(fail_after=5), LAYERS, k=4, bins=16, sample=6, batch_size=3, progress=False,
             checkpoint=ckpt, every=2)
    partial = load_scan_state(ckpt)
    assert partial.seen == 12 and partial.next_start == 23  # 4 batches of 3 checkpointed, the 5th lost
    resumed = scan(net, Images(), LAYERS, k=4, bins=16, sample=6, batch_size=3, progress=False, checkpoint=ckpt)
    _assert_same(whole, resumed)
    _assert_same(whole, load_scan_state(ckpt))
    again = scan(net, Images(), LAYERS, k=4, bins=16, sample=6, batch_size=3, progress=False, checkpoint=ckpt)
    _assert_same(whole, again)  # a finished scan rerun: nothing left to do, nothing counted twice


def test_same_results_as_the_separate_passes():
    net, data = _net(), Images()
    state = scan(net, data, LAYERS, k=5, bins=32, batch_size=7, progress=False)
    ex = dataset_examples(net, data.batches(7), LAYERS, k=5, progress=False)
    st = activation_stats(net, data.batches(7), LAYERS, bins=32, progress=False)
    for layer in LAYERS:
        for name, t in ex[layer].tensors().items():
            assert torch.equal(t, state.examples[layer].tensors()[name])
        for name in _ARRAYS:
            np.testing.assert_array_equal(getattr(st[layer], name), getattr(state.stats[layer], name))


def test_sample_is_uniform_choice_independent_of_batching():
    net = _net()
    a = scan(net, Images(), ["2"], k=2, sample=8, batch_size=3, progress=False).sample
    b = scan(net, Images(), ["2"], k=2, sample=8, batch_size=40, progress=False).sample
    assert torch.equal(a.index, b.index) and torch.equal(a.values["2"], b.values["2"])
    assert len(set(a.index.tolist())) == 8 and all(i % 2 == 0 for i in a.index.tolist())
    c = scan(net, Images(), ["2"], k=2, sample=8, seed=1, batch_size=3, progress=False).sample
    assert not torch.equal(a.index, c.index)
    with torch.no_grad():  # the sample keeps each item's spatial max per channel
        acts = net[:3](Images().x[a.index // 2])
    assert torch.equal(a.values["2"], acts.amax((2, 3)))


def test_checkpoint_of_another_scan_is_refused(tmp_path):
    net, ckpt = _net(), tmp_path / "scan.npz"
    scan(net, Images(), ["2"], k=2, progress=False, checkpoint=ckpt, settings={"model": "a"})
    with pytest.raises(MechscopeError, match="different scan.*k: checkpoint 2, now 3"):
        scan(net, Images(), ["2"], k=3, progress=False, checkpoint=ckpt, settings={"model": "a"})
    with pytest.raises(MechscopeError, match="model: checkpoint 'a', now 'b'"):
        scan(net, Images(), ["2"], k=2, progress=False, checkpoint=ckpt, settings={"model": "b"})
    fresh = scan(net, Images(), ["2"], k=3, progress=False, checkpoint=ckpt, resume=False)
    assert fresh.examples.k == 3
    with pytest.raises(MechscopeError, match="layer names"):
        scan(net, Images(), ["2:1"], progress=False)


def test_save_scan_writes_rows_crops_and_figures_without_duplicate_pngs(tmp_path):
    net, data = _net(), Images(n=20)
    state = scan(net, data, ["1", "2"], k=3, bins=16, sample=10, batch_size=8, progress=False)
    with open_store(tmp_path) as store:
        written = save_scan(store, state, net, data, model_name="tiny", input_size=SIZE, plot_units=2,
                            quilt_bins=3, quilt_per_bin=4, progress=False)
        assert written["stats"] == 9 and written["examples"] == 2 * 3 * 9 and written["layers"] == 2
        assert written["figures"] == 2 * (2 * 2 + 1)
        rows = read_rows(store, "examples", layer="2", channel=1, which="top")
        assert [r["dataset_index"] for r in rows] == state.examples["2"].top_index[1].tolist()
        crops = example_crops(state.examples, data, net, "2", 1, input_size=SIZE)
        stored = [np.asarray(Image.open(tmp_path / r["png"])) for r in rows]
        expected = (crops.permute(0, 2, 3, 1) * 255).round().byte().numpy()
        assert all(np.array_equal(a, b) for a, b in zip(stored, expected))
        stat, = read_rows(store, "stats", layer="2", channel=1)
        assert stat["count"] == 20 * 36 and sum(stat["histogram"]["counts"]) + stat["histogram"]["underflow"] + \
            stat["histogram"]["overflow"] == stat["count"]
        assert stat["mean"] == pytest.approx(float(state.stats["2"].mean[1]))
        pngs = {r["png"] for r in read_rows(store, "examples")} | {r["png"] for r in read_rows(store, "figures")}
        files = list((tmp_path / "png").rglob("*.png"))
        assert len(files) == len(pngs)  # one file per distinct content
        assert len(pngs) < written["examples"] + written["figures"]  # equal crops were stored once
        kinds = {(r["channel"], r["kind"]) for r in read_rows(store, "figures", layer="1")}
        assert kinds == {(0, "log_prob"), (0, "quilt"), (1, "log_prob"), (1, "quilt"), (-1, "log_prob")}
        # saving again replaces the layer's rows
        save_scan(store, state, net, data, model_name="tiny", input_size=SIZE, plot_units=[3], progress=False)
        assert {r["channel"] for r in read_rows(store, "figures", layer="1")} == {-1, 3}
        assert len(read_rows(store, "examples")) == written["examples"]


def test_skipped_files_are_collected(tmp_path):
    for i in range(5):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "2.png").write_bytes(b"broken")
    (tmp_path / "9.png").write_bytes(b"")
    folder = ImageFolder(tmp_path, size=SIZE)
    state = scan(_net(), folder, ["2"], k=2, batch_size=2, progress=False, checkpoint=tmp_path / "c.npz")
    assert state.seen == 4 and len(state.skipped) == 2
    assert skipped_summary(state.skipped) == {"UnidentifiedImageError": 2}
    assert load_scan_state(tmp_path / "c.npz").skipped == state.skipped


def test_items_of_a_dataset_without_indexing_are_read_through_batches(tmp_path):
    class Stream:  # only batches(), as a procedural world may offer
        def __init__(self):
            self.inner = Images(n=6)

        def batches(self, batch_size, start=0):
            return self.inner.batches(batch_size, start)

    net, data = _net(), Stream()
    state = scan(net, data, ["2"], k=2, sample=3, batch_size=4, progress=False)
    with open_store(tmp_path) as store:
        save_scan(store, state, net, data, model_name="tiny", input_size=SIZE, plot_units=1, progress=False)
        rows = read_rows(store, "examples", layer="2", channel=0, which="top")
    crops = example_crops(state.examples, data.inner, net, "2", 0, input_size=SIZE)
    expected = (crops.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    assert all(np.array_equal(np.asarray(Image.open(tmp_path / r["png"])), e) for r, e in zip(rows, expected))
