"""The Microscope build on a real local Ray cluster (two nodes, one CPU each) equals the in-process build; a node
killed mid-build loses and duplicates nothing; a missing ray package or cluster gives a clear error."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from mechscope.compute.engine import InProcess, engine
from mechscope.errors import MechscopeError
from mechscope.microscope.build import build
from mechscope.microscope.options import Evidence, Links
from mechscope.store import open_store, read_rows

ray = pytest.importorskip("ray")

PORT = 6412
ROOT = Path(__file__).resolve().parents[2]
SRC = str(ROOT / "src")
RAY_BIN = str(Path(sys.executable).with_name("ray"))
FAST_FAILURE = {"RAY_health_check_initial_delay_ms": "0", "RAY_health_check_period_ms": "500",
                "RAY_health_check_timeout_ms": "500", "RAY_health_check_failure_threshold": "3"}


def _ray_start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, **FAST_FAILURE, "PYTHONPATH": os.pathsep.join([SRC, str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen([RAY_BIN, "start", "--block", "--num-cpus", "1", "--disable-usage-stats", *args],
                            env=env, start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _kill(process: subprocess.Popen, temp_dir: str | None = None) -> None:
    """SIGKILL the process group of a ``ray start`` we started, then any process of ours left in ``temp_dir``
    (Ray's workers name their session folder on their command line)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(10)
    if temp_dir is None:
        return
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if temp_dir.encode() in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


def _alive() -> int:
    return sum(bool(n["Alive"]) for n in ray.nodes())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a second node joining it, both on this machine; yields ``(address, second node's process)``."""
    logs = tmp_path_factory.mktemp("ray-logs")
    temp_dir = f"/tmp/ray-test-mechscope-{os.getpid()}"
    address = f"127.0.0.1:{PORT}"
    head = _ray_start(["--head", "--port", str(PORT), "--node-ip-address", "127.0.0.1", "--temp-dir", temp_dir,
                       "--include-dashboard", "false"], logs / "head.log")
    node = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and head.poll() is None, (logs / "head.log").read_text()
                time.sleep(0.2)
        node = _ray_start(["--address", address, "--node-ip-address", "127.0.0.1"], logs / "node.log")
        ray.init(address=address, log_to_driver=False, configure_logging=False)
        while _alive() < 2:
            assert time.monotonic() < deadline, (logs / "node.log").read_text()
            time.sleep(0.2)
        yield address, node
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for process in (node, head):
            if process is not None:
                _kill(process, temp_dir)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU()).eval()


def _build(out: Path, compute_engine, steps: int = 4) -> dict[str, int]:
    return build(_net(), "tiny", ["1", "3"], out, evidence=Evidence(steps=steps, size=16),
                 links=Links({"3": "1"}, k=2), engine=compute_engine, progress=False)


def _rows(out: Path) -> list[tuple]:
    """Every row of the store, PNG hashes included, in a stable order (no row may appear twice)."""
    with open_store(out) as store:
        figures = [(r["layer"], r["channel"], r["kind"], r["png"], repr(r["settings"]))
                   for r in read_rows(store, "figures", model="tiny")]
        layers = [(r["layer"], r["channels"], repr(r["settings"])) for r in read_rows(store, "layers", model="tiny")]
    return sorted(figures) + sorted(layers)


def _same_rows(got: list[tuple], want: list[tuple]) -> None:
    """Equal rows, PNGs byte for byte; the settings' floats (a unit's activation on its final image) to 1e-5:
    that activation comes from one forward pass of the slice's batch, and a convolution's kernel can differ in
    the last bits of float32 between batch sizes (the images themselves are the same, see the PNG hashes)."""
    assert len(got) == len(set(got)) == len(want)
    for a, b in zip(got, want):
        assert a[:-1] == b[:-1]
        x, y = eval(a[-1]), eval(b[-1])   # repr of JSON-like settings written by this test's own build
        assert x.keys() == y.keys(), (a, b)
        for key in x:
            assert x[key] == (pytest.approx(y[key], rel=1e-5, abs=1e-7) if isinstance(y[key], float) else y[key]), (
                a, b)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The in-process build of the same atlas (the reference), with one torch thread as each Ray task has: the
    images are bitwise the same for any slicing, but not for any thread count (a 2-thread kernel sums in another
    order: ~1e-5 apart, which can flip a rare 8-bit pixel)."""
    out = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert _build(out, InProcess()) == {"built": 12, "skipped": 0}
    finally:
        torch.set_num_threads(threads)
    return _rows(out)


def test_a_ray_build_equals_the_in_process_build(cluster, local, tmp_path):
    address, _ = cluster
    on_ray = engine(address)
    assert on_ray.name == "ray" and on_ray.workers == 2
    assert _build(tmp_path, on_ray) == {"built": 12, "skipped": 0}
    _same_rows(_rows(tmp_path), local)    # the same rows and the same PNGs, byte for byte
    assert _build(tmp_path, on_ray) == {"built": 0, "skipped": 12}  # and it is up to date


def _die_once(marker_dir: str, task: int) -> int:
    """Task ``task``; every third one kills its worker process the first time it runs."""
    marker = Path(marker_dir) / str(task)
    if task % 3 == 0 and not marker.exists():
        marker.touch()
        os._exit(1)
    return task * task


def test_ray_reruns_a_task_whose_worker_died_and_yields_each_index_once(cluster, tmp_path):
    address, _ = cluster
    got = list(engine(address).map(_die_once, list(range(7)), shared=str(tmp_path)))
    assert sorted(i for i, _ in got) == list(range(7))        # each index once
    assert dict(got) == {i: i * i for i in range(7)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "3", "6"]   # those workers did die once


class _KillAfterFirst:
    """A Ray engine that kills the second node as soon as the first task's result has arrived."""

    def __init__(self, inner, node: subprocess.Popen) -> None:
        self.inner, self.node, self.name, self.workers = inner, node, inner.name, inner.workers
        self.after_kill = 0

    def map(self, fn, tasks, shared=None):
        for n, item in enumerate(self.inner.map(fn, tasks, shared)):
            if n == 0:
                _kill(self.node)
            else:
                self.after_kill += 1
            yield item


def test_a_node_killed_during_the_build_loses_and_duplicates_nothing(cluster, local, tmp_path):
    address, node = cluster
    killing = _KillAfterFirst(engine(address), node)
    assert _build(tmp_path, killing) == {"built": 12, "skipped": 0}
    assert killing.after_kill >= 3            # most of the build ran after the kill
    assert node.poll() is not None
    _same_rows(_rows(tmp_path), local)


def test_a_missing_ray_package_or_cluster_is_a_clear_error(monkeypatch):
    with pytest.raises(MechscopeError, match=r"nothing answers at 127\.0\.0\.1:6419"):
        engine("127.0.0.1:6419")
    monkeypatch.setitem(sys.modules, "ray", None)   # as if not installed
    with pytest.raises(MechscopeError, match=r"ray package.*mechscope\[ray\]"):
        engine("127.0.0.1:6419")
