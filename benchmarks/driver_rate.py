"""How many worker nodes can one driver feed?  The split of a Microscope build's work between its tasks (what Ray
fans out: feature visualizations, tuning curves, links) and its driver (the only writer: dataset figures and
attributions drawn from the merged scan, the SQLite rows and PNG files, the downstream bar charts), and, with
``--ray ADDRESS``, the same vision build in this process (``--threads`` torch threads) and on that cluster (one
thread per task), alternating (paired).

Everything is measured in CPU seconds of this process (``time.process_time``), with one torch thread as a Ray task
has, so the split holds on a machine shared with other work.  The driver's rate is units written per CPU second,
and its write rate rows/s and PNG bytes/s (the ``_write`` transactions alone); a worker CPU produces one unit per
``task CPU s / unit``; one driver feeds ``(task CPU s / unit) / (driver CPU s / unit)`` worker CPUs, so many nodes
of ``--cpus-per-node`` CPUs.  The dataset scan's forward pass is left out of both: the build shards it over the
workers (``vision.evidence.shards``), and its merge is small.

    PYTHONPATH=src python benchmarks/driver_rate.py [--layer mixed4a] [--below mixed3b] [--units 32] [--steps 128]
                                                    [--images 1024] [--cpus-per-node 16] [--ray ADDRESS --rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402

import mechscope.microscope.build as build_mod  # noqa: E402
import mechscope.vision.evidence.scan as scan_mod  # noqa: E402
from mechscope.compute.engine import InProcess, engine  # noqa: E402
from mechscope.data.shapes import ShapesDataset  # noqa: E402
from mechscope.microscope.options import DatasetEvidence, Evidence, Links  # noqa: E402
from mechscope.zoo.registry import load  # noqa: E402


class _Clocked(InProcess):
    """In this process, adding each task's CPU seconds to ``self.cpu``."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu = 0.0

    def map(self, fn, tasks, shared=None):
        for i, task in enumerate(tasks):
            start = time.process_time()
            out = fn(shared, task)
            self.cpu += time.process_time() - start
            yield i, out


def _wrap(module, name: str, log: dict) -> None:
    """Add the CPU seconds of every call of ``module.name`` to ``log[name]`` (and the call's arguments)."""
    real = getattr(module, name)

    def clocked(*args, **kwargs):
        start = time.process_time()
        try:
            return real(*args, **kwargs)
        finally:
            log[name] = log.get(name, 0.0) + time.process_time() - start
            log.setdefault(f"{name}_args", []).append(args)

    setattr(module, name, clocked)


def split(args: argparse.Namespace, net: torch.nn.Module) -> dict:
    log: dict = {}
    _wrap(build_mod, "_write", log)
    _wrap(scan_mod, "scan", log)
    clocked = _Clocked()
    data = ShapesDataset(args.images, size=64, seed=7)
    with tempfile.TemporaryDirectory() as out:
        wall, cpu = time.perf_counter(), time.process_time()
        counts = build_mod.build(net, "shapes", [args.layer], out, units_per_layer=args.units,
                                 evidence=Evidence(steps=args.steps, size=64), links=Links({args.layer: args.below}, k=4),
                                 dataset=DatasetEvidence(data, f"shapes:{args.images}:7", 8), engine=clocked,
                                 progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        pngs = sorted(Path(out).rglob("*.png"))
        png_bytes = sum(p.stat().st_size for p in pngs)
        rows = sum(len(done.pngs) + len(done.rows) for _, _, _, done, _ in log["_write_args"])
        written = sum(sum(len(data) for _, data in done.pngs) for _, _, _, done, _ in log["_write_args"])
    units = counts["built"]
    task = clocked.cpu / units
    driver = (cpu - clocked.cpu - log["scan"]) / units
    fed = task / driver
    return {"units": units, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "task_cpu_s": round(clocked.cpu, 2),
            "scan_forward_cpu_s": round(log["scan"], 2), "task_cpu_s_per_unit": round(task, 3),
            "driver_cpu_s_per_unit": round(driver, 3), "driver_units_per_cpu_s": round(1 / driver, 2),
            "write_cpu_s": round(log["_write"], 3), "rows_written_by_write": rows,
            "write_rows_per_s": round(rows / log["_write"], 1),
            "write_png_bytes_per_s": round(written / log["_write"]),
            "store_pngs": len(pngs), "store_png_bytes": png_bytes,
            "worker_cpus_one_driver_feeds": round(fed, 1),
            "nodes_one_driver_feeds": round(fed / args.cpus_per_node, 2)}


def fanout(args: argparse.Namespace, net: torch.nn.Module) -> dict:
    engines = {"in-process": InProcess(), "ray": engine(args.ray)}
    times: dict[str, list[float]] = {name: [] for name in engines}
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            for name in list(engines) if r % 2 == 0 else list(engines)[::-1]:
                torch.set_num_threads(args.threads if name == "in-process" else 1)  # Ray's tasks set their own
                start = time.perf_counter()
                build_mod.build(net, "shapes", [args.below, args.layer], Path(d) / f"{name}_{r}",
                                units_per_layer=args.units, evidence=Evidence(steps=args.steps, size=64),
                                links=Links({args.layer: args.below}, k=4), engine=engines[name], progress=False)
                times[name].append(round(time.perf_counter() - start, 2))
    ratios = sorted(a / b for a, b in zip(times["in-process"], times["ray"]))
    return {"workers": engines["ray"].workers, "seconds": times, "ray_speedup_min_pair": round(min(ratios), 3),
            "ray_speedup_max_pair": round(max(ratios), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", default="mixed4a")
    parser.add_argument("--below", default="mixed3b")
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--cpus-per-node", type=int, default=16)
    parser.add_argument("--ray", default=None, help="a Ray cluster's address: also time the build there")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the in-process build it is compared "
                                                               "with (its default: every core)")
    parser.add_argument("--no-split", action="store_true", help="only the in-process vs Ray comparison")
    parser.add_argument("--out", default="driver_rate")
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = load("shapes", device="cpu").eval()
    load_start = [round(v, 2) for v in os.getloadavg()]
    result = None if args.no_split else split(args, net)
    if result:
        print(f"{args.layer}, {result['units']} units, {args.steps} steps, {args.images} images, 1 thread: tasks "
              f"{result['task_cpu_s_per_unit']:.2f} CPU s/unit, driver {result['driver_cpu_s_per_unit']:.3f} CPU s/unit "
              f"(writes {result['write_rows_per_s']:.0f} rows/s, {result['write_png_bytes_per_s'] / 1e6:.1f} MB/s "
              f"of PNG) -> one driver feeds {result['worker_cpus_one_driver_feeds']:.1f} worker CPUs = "
              f"{result['nodes_one_driver_feeds']:.2f} nodes of {args.cpus_per_node}", flush=True)
    ray = fanout(args, net) if args.ray else None
    if ray:
        print(f"in-process {ray['seconds']['in-process']} s vs Ray ({ray['workers']} workers) {ray['seconds']['ray']} s")
    path = write(args.out, {"machine": {**machine(), "torch_threads": 1}, "settings": vars(args), "split": result,
                            "fanout": ray, "load_average_at_start": load_start,
                            "load_average_at_end": [round(v, 2) for v in os.getloadavg()]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
