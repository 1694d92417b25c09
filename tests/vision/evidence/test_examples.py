import pytest
import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.evidence.examples import (
    GREY,
    ExamplesState,
    dataset_examples,
    example_crops,
    load_state,
    save_state,
)
from mechscope.vision.evidence.receptive_field import receptive_field_map

SIZE = 12
LAYERS = ["1", "2", "5"]  # [B, 4, 12, 12] after ReLU, [B, 5, 6, 6] conv, [B, 3] linear


def _net(seed=0):
    """A tiny conv net with small integer weights: on small integer images every activation is exact, whatever
    the batch size or summation order, so results can be compared for equality."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2, padding=1),
                        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(5, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randint(-2, 3, p.shape, generator=g).float())
    return net


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 4, (n, 3, SIZE, SIZE), generator=g).float()
    x[7] = x[3]  # duplicates: equal values at different indices test the tie-break
    x[30 % n] = x[3]
    return x


def _batches(data, batch_size, start=0):
    """(indices, images) batches from dataset index ``start`` on, as ``ImageFolder.batches(batch_size, start)``;
    indices skip some numbers (as ImageFolder's do around unreadable files): item i has dataset index 2 * i."""
    for s in range((start + 1) // 2, len(data), batch_size):
        idx = list(range(s, min(s + batch_size, len(data))))
        yield [2 * i for i in idx], data[idx]


def _brute(net, data, layer, k):
    """Expected (top_values, top_index, top_pos, bottom_values, bottom_index, bottom_pos) by sorting everything."""
    with torch.no_grad():
        acts = net[: int(layer) + 1](data)
    if acts.dim() == 2:
        acts = acts[:, :, None, None]
    n, c, _, y = acts.shape
    flat = acts.reshape(n, c, -1)
    out = []
    for largest in (True, False):
        ext, where = (flat.max(-1) if largest else flat.min(-1))
        vals, idxs, poss = [], [], []
        for ch in range(c):
            key = (lambda i: (-float(ext[i, ch]), i)) if largest else (lambda i: (float(ext[i, ch]), i))
            best = sorted(range(n), key=key)[:k]
            vals.append([float(ext[i, ch]) for i in best])
            idxs.append([2 * i for i in best])
            poss.append([[int(flat[i, ch].eq(ext[i, ch]).nonzero()[0]) // y,
                          int(flat[i, ch].eq(ext[i, ch]).nonzero()[0]) % y] for i in best])
        out += [torch.tensor(vals), torch.tensor(idxs), torch.tensor(poss)]
    return out, acts


def _assert_same(a: ExamplesState, b: ExamplesState):
    assert (a.k, a.seen, a.last_index, list(a.layers)) == (b.k, b.seen, b.last_index, list(b.layers))
    for layer in a.layers:
        for name, t in a[layer].tensors().items():
            assert torch.equal(t, b[layer].tensors()[name]), (layer, name)


def test_top_and_bottom_k_equal_brute_force_with_positions():
    net, data = _net(), _data()
    state = dataset_examples(net, _batches(data, 7), LAYERS, k=5, progress=False)
    assert state.seen == 40 and state.last_index == 78 and state.next_start == 79
    for layer in LAYERS:
        expected, acts = _brute(net, data, layer, 5)
        got = state[layer]
        for name, want in zip(("top_values", "top_index", "top_pos", "bottom_values", "bottom_index", "bottom_pos"),
                              expected):
            assert torch.equal(getattr(got, name), want.to(getattr(got, name).dtype)), (layer, name)
        # the kept position holds the kept value
        for prefix in ("top", "bottom"):
            v, i, p = (getattr(got, f"{prefix}_{f}") for f in ("values", "index", "pos"))
            for ch in range(got.channels):
                for slot in range(5):
                    x, y = p[ch, slot].tolist()
                    assert acts[int(i[ch, slot]) // 2, ch, x, y] == v[ch, slot]
    assert (state["5"].top_pos == 0).all()  # [B, C] layers: position (0, 0)


def test_ties_broken_by_index_and_fewer_items_than_k():
    net, data = _net(), _data()
    state = dataset_examples(net, _batches(data, 4), "1", k=3, progress=False)
    bottom = state["1"]
    # after a ReLU most channels' min is 0 in many images: the smallest indices win
    zero = bottom.bottom_values == 0
    assert zero.any()
    assert (bottom.bottom_index[zero.all(1)] == torch.tensor([0, 2, 4])).all()
    few = dataset_examples(net, _batches(data[:2], 4), "1", k=3, progress=False)["1"]
    assert (few.top_index[:, 2] == -1).all() and (few.top_pos[:, 2] == -1).all()
    assert set(few.top_index[:, :2].flatten().tolist()) <= {0, 2}


@pytest.mark.parametrize("batch_size", [1, 3, 40])
def test_independent_of_batch_size(batch_size):
    net, data = _net(), _data()
    ref = dataset_examples(net, _batches(data, 8), LAYERS, k=6, progress=False)
    _assert_same(dataset_examples(net, _batches(data, batch_size), LAYERS, k=6, progress=False), ref)


def test_interrupted_scan_resumed_is_identical(tmp_path):
    net, data = _net(), _data()
    full = dataset_examples(net, _batches(data, 5), LAYERS, k=4, progress=False)

    def stopping(gen, after):
        for n, item in enumerate(gen):
            if n == after:
                raise KeyboardInterrupt
            yield item

    ckpt = tmp_path / "ex.npz"
    with pytest.raises(KeyboardInterrupt):
        dataset_examples(net, stopping(_batches(data, 5), 5), LAYERS, k=4, progress=False, checkpoint=ckpt, every=2)
    saved = load_state(ckpt)  # the checkpoint after 4 batches survived the "crash"
    assert saved.seen == 20 and saved.next_start == 39
    resumed = dataset_examples(net, _batches(data, 5, start=saved.next_start), LAYERS, k=4, state=saved,
                               progress=False)
    _assert_same(resumed, full)
    assert saved.seen == 20  # the state passed in is not modified

    # in memory, several interruptions, a different batch size after each; plus a save/load round trip
    state = None
    for stop, bs in ((9, 2), (10, 1), (33, 7), (40, 3)):
        start = state.next_start if state is not None else 0
        state = dataset_examples(net, _batches(data[:stop], bs, start=start), LAYERS, k=4, state=state,
                                 progress=False)
        save_state(state, tmp_path / "s.npz")
        state = load_state(tmp_path / "s.npz")
    _assert_same(state, full)
    assert not list(tmp_path.glob("*.part"))  # atomic writes leave no temporary files


def test_rescanning_seen_indices_is_refused():
    net, data = _net(), _data(10)
    state = dataset_examples(net, _batches(data, 4), "2", k=2, progress=False)
    with pytest.raises(MechscopeError, match="increase strictly"):
        dataset_examples(net, _batches(data, 4), "2", k=2, state=state, progress=False)
    with pytest.raises(MechscopeError, match="k=2"):
        dataset_examples(net, _batches(data, 4, start=state.next_start), "2", k=3, state=state, progress=False)
    with pytest.raises(MechscopeError, match="layer names"):
        dataset_examples(net, _batches(data, 4), "2:1", progress=False)


def test_memory_constant_in_dataset_size():
    net = _net()
    small = dataset_examples(net, _batches(_data(12), 4), LAYERS, k=5, progress=False)
    large = dataset_examples(net, _batches(_data(60, seed=1), 4), LAYERS, k=5, progress=False)
    for layer in LAYERS:
        for name, t in small[layer].tensors().items():
            assert t.shape == large[layer].tensors()[name].shape
            assert t.shape[:2] == (small[layer].channels, 5)


def test_crops_have_rf_size_and_match_image_slice():
    net, data = _net(), _data()
    state = dataset_examples(net, _batches(data, 8), "2", k=4, progress=False)
    dataset = {2 * i: data[i] for i in range(len(data))}  # dataset index -> image
    grid = receptive_field_map(net, "2", SIZE)
    assert grid.size == (5, 5)
    for which in ("top", "bottom"):
        crops = example_crops(state, dataset, net, "2", 1, which=which, input_size=SIZE)
        assert crops.shape == (4, 3, 5, 5)
    # an interior position: the crop is the direct slice; a corner position: clipped part is grey
    ex = state["2"]
    ex.top_pos[0, 0] = torch.tensor([3, 2])
    ex.top_pos[0, 1] = torch.tensor([0, 0])
    crops = example_crops(state, dataset, net, "2", 0, input_size=SIZE)
    image = dataset[int(ex.top_index[0, 0])]
    assert torch.equal(crops[0], image[:, 4:9, 2:7])
    assert torch.equal(crops[0], grid.crop(image, 3, 2))
    corner = dataset[int(ex.top_index[0, 1])]
    assert grid.box(0, 0) == (0, 0, 3, 3)  # the field [-2, 3) clipped at the border
    assert (crops[1, :, :2, :] == GREY).all() and (crops[1, :, :, :2] == GREY).all()
    assert torch.equal(crops[1, :, 2:, 2:], corner[:, :3, :3])
    with pytest.raises(MechscopeError, match="top"):
        example_crops(state, dataset, net, "2", 0, which="middle", input_size=SIZE)
