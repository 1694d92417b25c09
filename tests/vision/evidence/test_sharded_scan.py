"""Scans split into image ranges (in-process and over a real 2-node local Ray cluster) equal the single pass."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mechscope.compute.engine import InProcess
from mechscope.data.shapes import ShapesDataset
from mechscope.errors import MechscopeError
from mechscope.vision.evidence.examples import LayerExamples, _update
from mechscope.vision.evidence.scan import scan
from mechscope.vision.evidence.shards import merge_layer_examples, shard_ranges, sharded_scan
from mechscope.vision.evidence.stats import _ARRAYS

from .test_scan import LAYERS, Images, _net

FLOAT_MOMENTS = ("mean", "m2")  # merged by Chan's parallel update: equal up to float64 rounding of the grouping


def _assert_equal(one, split, rtol=1e-12):
    """Top-k indices, values and positions, the sample and every statistic of two ScanStates are the same (the
    float moments up to ``rtol``)."""
    assert (one.layers, one.seen, one.next_start, one.bins, one.settings) == (
        split.layers, split.seen, split.next_start, split.bins, split.settings)
    assert torch.equal(one.sample.index, split.sample.index) and torch.equal(one.sample.key, split.sample.key)
    for layer in one.layers:
        for name, t in one.examples[layer].tensors().items():
            assert torch.equal(t, split.examples[layer].tensors()[name]), (layer, name)
        assert torch.equal(one.sample.values[layer], split.sample.values[layer])
        assert torch.equal(one.sample.pos[layer], split.sample.pos[layer])
        for name in _ARRAYS:
            a, b = getattr(one.stats[layer], name), getattr(split.stats[layer], name)
            if name in FLOAT_MOMENTS:
                np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol, err_msg=f"{layer} {name}")
            else:
                np.testing.assert_array_equal(a, b, err_msg=f"{layer} {name}")


def test_three_shards_in_process_equal_the_single_pass():
    net, data = _net(), ShapesDataset(45, size=16, seed=1)
    one = scan(net, data, LAYERS, k=5, sample=16, batch_size=7, progress=False, settings={"x": 1})
    split = sharded_scan(net, data, LAYERS, engine=InProcess(), shards=3, k=5, sample=16, batch_size=7,
                         progress=False, settings={"x": 1})
    _assert_equal(one, split)
    assert one.stats["1"].count.sum() > 0 and int(split.examples["2"].top_index.min()) >= 0


def test_shards_of_a_dataset_with_gaps_in_its_indices():
    """Indices 0, 2, 4, ... (as around unreadable files): shards read differently composed batches, so only the
    float moments differ, by float32 rounding."""
    net, data = _net(), Images(n=40)
    one = scan(net, data, LAYERS, k=5, sample=16, batch_size=7, progress=False)
    split = sharded_scan(net, data, LAYERS, shards=4, k=5, sample=16, batch_size=7, progress=False)
    _assert_equal(one, split, rtol=1e-6)


def test_examples_merge_is_order_independent_with_ties_by_index():
    """Many equal values (a ReLU layer of integer activations): the merge keeps the smaller dataset indices."""
    g = torch.Generator().manual_seed(1)
    acts = torch.randint(0, 3, (30, 4, 2, 2), generator=g).float()
    a = _update(LayerExamples.empty(4, 6), acts[:12], torch.arange(12))
    b = _update(LayerExamples.empty(4, 6), acts[12:], torch.arange(12, 30))
    whole = _update(LayerExamples.empty(4, 6), acts, torch.arange(30))
    for merged in (merge_layer_examples(a, b), merge_layer_examples(b, a)):
        for name, t in whole.tensors().items():
            assert torch.equal(t, merged.tensors()[name]), name


def test_shard_ranges_cover_the_dataset_without_empty_shards():
    assert shard_ranges(5, 8) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert shard_ranges(7, 2) == [(0, 3), (3, 7)]
    assert shard_ranges(45, 3, align=7) == [(0, 14), (14, 28), (28, 45)]
    with pytest.raises(MechscopeError, match="shards must be a positive int"):
        shard_ranges(7, 0)


# ---- a real local Ray cluster: a head and a second node joining it (never `ray stop`: other clusters run) -----

HEAD_PORT = 6420


def _ray_bin():
    found = Path(sys.executable).with_name("ray")
    return str(found) if found.exists() else shutil.which("ray")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    ray = pytest.importorskip("ray")
    if _ray_bin() is None:
        pytest.skip("the ray command is not installed")
    temp = Path("/tmp") / f"ray-wtD-{os.getpid()}"
    src = str(Path(__file__).resolve().parents[3] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    common = ["--block", "--num-cpus", "1", "--disable-usage-stats", "--object-store-memory", str(80 * 2**20)]
    head = [_ray_bin(), "start", "--head", "--port", str(HEAD_PORT), "--node-ip-address", "127.0.0.1",
            "--temp-dir", str(temp), "--include-dashboard", "false",
            "--dashboard-agent-listen-port", "6422", "--metrics-export-port", "6423", *common]
    node = [_ray_bin(), "start", "--address", f"127.0.0.1:{HEAD_PORT}", "--node-ip-address", "127.0.0.1",
            "--dashboard-agent-listen-port", "6425", "--metrics-export-port", "6426", *common]
    logs = tmp_path_factory.mktemp("ray")
    procs = [subprocess.Popen(head, env=env, start_new_session=True, stdout=open(logs / "head.log", "w"),
                              stderr=subprocess.STDOUT)]
    try:
        time.sleep(3)
        procs.append(subprocess.Popen(node, env=env, start_new_session=True, stdout=open(logs / "node.log", "w"),
                                      stderr=subprocess.STDOUT))
        deadline, alive = time.time() + 60, 0
        while time.time() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            try:
                if not ray.is_initialized():
                    ray.init(address=f"127.0.0.1:{HEAD_PORT}", log_to_driver=False, configure_logging=False)
                alive = sum(n["Alive"] for n in ray.nodes())
            except Exception:  # noqa: BLE001 - the head is still starting
                alive = 0
            if alive >= 2:
                break
            time.sleep(1)
        if alive < 2:
            logs_said = "\n".join((logs / f).read_text()[-2000:] for f in ("head.log", "node.log")
                                  if (logs / f).exists())
            pytest.fail(f"the local Ray cluster did not come up with 2 nodes ({alive} alive):\n{logs_said}")
        yield f"127.0.0.1:{HEAD_PORT}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def _shapes_net():
    g = torch.Generator().manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2, padding=1),
                        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(5, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net.eval()


def test_shards_on_a_two_node_ray_cluster_equal_the_single_pass(ray_cluster):
    from mechscope.compute.engine import engine

    net, data = _shapes_net(), ShapesDataset(48, size=16, seed=2)
    one = scan(net, data, LAYERS, k=4, sample=12, batch_size=8, progress=False)
    runner = engine(ray_cluster)
    assert runner.name == "ray" and runner.workers == 2
    split = sharded_scan(net, data, LAYERS, engine=runner, shards=3, k=4, sample=12, batch_size=8, progress=False)
    _assert_equal(one, split)


def test_cli_examples_and_stats_on_the_cluster_write_the_in_process_rows(ray_cluster, tmp_path):
    from typer.testing import CliRunner

    from mechscope.cli import app
    from mechscope.store import open_store, read_rows

    def rows(out, table):
        with open_store(out) as store:
            return [{k: v for k, v in r.items() if k != "png"} for r in read_rows(store, table, layer="conv2d0")]

    common = ["shapes", "conv2d0", "--dataset", "shapes:24", "--weights", "random", "--batch-size", "8"]
    for verb, table, extra in (("examples", "examples", ["--top-k", "2"]), ("stats", "stats", ["--plot-units", "0"])):
        local = CliRunner().invoke(app, [verb, *common, *extra, "--out", str(tmp_path / f"{verb}-local")])
        remote = CliRunner().invoke(app, [verb, *common, *extra, "--out", str(tmp_path / f"{verb}-ray"),
                                          "--ray", ray_cluster])
        assert local.exit_code == 0 and remote.exit_code == 0, local.output + remote.output
        a, b = rows(tmp_path / f"{verb}-local", table), rows(tmp_path / f"{verb}-ray", table)
        assert len(a) == len(b) == {"examples": 32 * 2 * 2, "stats": 32}[table], verb
        for x, y in zip(a, b):     # mean and std merged by Chan's update: equal up to float64 rounding
            moments = [(x.pop(m), y.pop(m)) for m in ("mean", "std") if m in x]
            assert x == y and all(u == pytest.approx(v, rel=1e-12, abs=1e-12) for u, v in moments), verb
