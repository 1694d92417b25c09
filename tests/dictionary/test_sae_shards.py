"""Sharded SAE activation collection equals the single pass: same rows, same order, same ``max_rows`` cut."""

import pytest
import torch

from mechscope.compute.engine import InProcess
from mechscope.data.shapes import ShapesDataset
from mechscope.errors import MechscopeError
from mechscope.dictionary.sae import capture_activations
from mechscope.dictionary.sae_shards import collect_activations
from mechscope.zoo.registry import load


class Counting(InProcess):
    """In-process, but reporting several workers and counting the tasks it ran."""

    def __init__(self, workers):
        super().__init__(workers=workers)
        self.tasks = []

    def map(self, fn, tasks, shared=None):
        self.tasks = list(tasks)
        for i in reversed(range(len(tasks))):       # out of order, as a cluster returns them
            yield i, fn(shared, tasks[i])


@pytest.fixture(scope="module")
def shapes():
    return load("shapes", device="cpu").eval(), ShapesDataset(20, seed=3)


@pytest.mark.parametrize("layer", ["mixed3a", "softmax2_pre_activation"])   # [B, C, H, W] maps; [B, d] logits
def test_sharded_collection_equals_the_single_pass(shapes, layer):
    net, data = shapes
    runner = Counting(workers=2)
    rows = collect_activations(net, layer, data, engine=runner, batch_size=4)
    want = capture_activations(net, layer, data.batches(4))
    assert len(runner.tasks) == 4                      # 2 x workers image ranges, cut at batch boundaries
    assert all(a % 4 == 0 for a, _ in runner.tasks)
    assert rows.device == torch.device("cpu") and torch.equal(rows, want)


def test_max_rows_reads_only_the_images_it_needs_and_cuts_like_the_single_pass(shapes):
    net, data = shapes
    runner = Counting(workers=3)
    rows = collect_activations(net, "mixed3a", data, engine=runner, batch_size=2, max_rows=1000)
    want = capture_activations(net, "mixed3a", data.batches(2), max_rows=1000)
    assert torch.equal(rows, want) and rows.shape[0] == 1000
    per_image = capture_activations(net, "mixed3a", data.batches(1), max_rows=10**9).shape[0] // len(data)
    read = max(stop for _, stop in runner.tasks)
    assert read == -(-(-(-1000 // per_image)) // 2) * 2 < len(data)   # whole batches, no more


def test_collection_refuses_a_dataset_without_length_and_bad_max_rows(shapes):
    net, data = shapes
    with pytest.raises(MechscopeError, match="max_rows"):
        collect_activations(net, "mixed3a", data, engine=InProcess(), max_rows=0)
    with pytest.raises(MechscopeError, match="length"):
        collect_activations(net, "mixed3a", iter([]), engine=InProcess())
