"""A build's dataset evidence: one pass over the data for all its layers, equal to per-layer scans, and cut into
image ranges on an engine with several workers."""

import pytest
import torch
from torch import nn

from mechscope.compute.engine import InProcess
from mechscope.data.shapes import ShapesDataset
from mechscope.microscope.build import _scan_dataset, _Settings, build
from mechscope.microscope.options import DatasetEvidence, Evidence
from mechscope.store import open_store, read_rows
from mechscope.vision.evidence import scan as scan_module
from mechscope.vision.evidence import shards as shards_module

FAST = Evidence(steps=2, size=16, negative=False, tuning=False)
LAYERS = ["1", "3"]


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, stride=2, padding=1),
                         nn.ReLU()).eval()


def _rows(out, table):
    with open_store(out) as store:
        return [r for layer in LAYERS for r in read_rows(store, table, model="toy", layer=layer)]


def test_all_layers_come_from_one_pass_equal_to_per_layer_scans(tmp_path, monkeypatch):
    net, data = _net(), DatasetEvidence(ShapesDataset(140, size=16, seed=4), name="shapes:140", examples_k=3)
    calls = []
    real = scan_module.capture

    def counting(model, x, layers):
        calls.append((len(x), tuple(layers)))
        return real(model, x, layers)

    monkeypatch.setattr(scan_module, "capture", counting)
    build(net, "toy", LAYERS, tmp_path / "together", evidence=FAST, dataset=data, progress=False)
    assert calls == [(64, tuple(LAYERS)), (64, tuple(LAYERS)), (12, tuple(LAYERS))]     # one forward per batch, both layers
    for layer in LAYERS:
        build(net, "toy", [layer], tmp_path / "apart", evidence=FAST, dataset=data, progress=False)
    for table in ("examples", "stats"):
        together, apart = _rows(tmp_path / "together", table), _rows(tmp_path / "apart", table)
        assert len(together) > 0 and together == apart, table


def test_the_build_scan_on_an_engine_with_workers_is_sharded_and_equal(tmp_path, monkeypatch):
    net, data = _net(), DatasetEvidence(ShapesDataset(140, size=16, seed=4), name="shapes:140", examples_k=3)
    chosen, config = {layer: list(range(3)) for layer in LAYERS}, _Settings("toy", FAST, 2)
    spatial = {layer: True for layer in LAYERS}
    shards = []
    real = shards_module._scan_shard
    monkeypatch.setattr(shards_module, "_scan_shard", lambda shared, task: shards.append(task) or real(shared, task))
    for name, engine in (("one", None), ("split", InProcess(workers=3))):
        with open_store(tmp_path / name) as store:
            done = _scan_dataset(store, net, config, chosen, {}, spatial, data, False, engine=engine)
        assert done == {layer: set(range(3)) for layer in LAYERS}
    assert shards == [(0, 64), (64, 128), (128, 140)]     # 6 asked (2 x 3 workers); 3 batch-aligned ranges
    for table in ("examples", "stats"):
        one, split = _rows(tmp_path / "one", table), _rows(tmp_path / "split", table)
        assert len(one) == len(split) > 0
        for a, b in zip(one, split):
            moments = [(a.pop(m), b.pop(m)) for m in ("mean", "std") if m in a]
            assert a == b and all(x == pytest.approx(y, rel=1e-12) for x, y in moments), table
