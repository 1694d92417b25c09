"""What the dataset-example + statistics scan costs over the model's plain forward, and that its memory is flat.

1. Throughput: the plain forward (``capture`` stopped at the deepest scanned layer) vs the full ``scan`` (top/bottom-k
   examples, statistics with histograms, the quilt sample) on the same in-memory images, interleaved rounds;
   reported as images/s and the paired ratio scan/forward throughput (target >= 0.85).
2. Memory: peak RSS growth (``VmHWM`` after resetting it) and tracemalloc peak of a scan over a procedural stream
   of random images, at two dataset sizes, each in a fresh child process.

Default model: the bundled ``shapes`` organism when ``mechscope.load("shapes")`` works, else InceptionV1 with random
weights at 64 px.  Run: ``.venv/bin/python benchmarks/examples_scan.py [--model M] [--layers L ...] [--size S]``
(``make bench-scan``).  Writes ``benchmarks/results/examples_scan.json`` (``--name`` to change).

Measured here (AMD EPYC, 1 torch thread, another job on the machine's 2 cores): shapes organism 0.91 (paired
median of 7 rounds), InceptionV1 at 64 px 0.88 (``examples_scan_inceptionv1.json``); scan state 1.4 / 3.0 MB and
tracemalloc peak ~2.0 / ~4.5 MB at both 512 and 4096 images.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tracemalloc
from pathlib import Path

import torch

import mechscope
from _common import interleaved, machine, paired_ratio, write
from mechscope.vision.evidence.scan import scan
from mechscope.vision.evidence.stats import _ARRAYS


class InMemory:
    """Images held in memory, served as ``(indices, images)`` batches."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int, start: int = 0):
        for i in range(start, len(self.images), batch_size):
            yield list(range(i, min(i + batch_size, len(self.images)))), self.images[i:i + batch_size]


class RandomStream:
    """``n`` procedural images (smooth random colour fields), generated batch by batch: nothing is kept."""

    def __init__(self, n: int, size: int, seed: int = 0) -> None:
        self.n, self.size, self.seed = n, size, seed

    def __len__(self) -> int:
        return self.n

    def batches(self, batch_size: int, start: int = 0):
        for i in range(start, self.n, batch_size):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
            b = min(batch_size, self.n - i)
            low = torch.rand(b, 3, 8, 8, generator=g)
            x = torch.nn.functional.interpolate(low, size=self.size, mode="bilinear", align_corners=False)
            yield list(range(i, i + b)), (x + 0.1 * torch.rand(b, 3, self.size, self.size, generator=g)).clamp(0, 1)


def _model(name: str | None, size: int | None):
    """``(name, weights, model, size)``.  Default: the bundled ``shapes`` organism, else InceptionV1.  A named model
    without bundled weights runs with random ones (the timing does not depend on the weights' values)."""
    wanted = name or "shapes"
    try:
        net, weights = mechscope.load(wanted, device="cpu"), "bundled"
    except Exception:  # noqa: BLE001 - not registered, or no bundled weights (yet)
        wanted = name or "inceptionv1"
        net, weights = mechscope.load(wanted, weights="random", seed=0, device="cpu"), "random"
    card = mechscope.zoo.registry.get_card(wanted)
    size = size or (64 if card.name == "inceptionv1" else int(card.input_shape[-1]))
    return card.name, weights, net, size


def _default_layers(net) -> list[str]:
    names = list(getattr(net, "layer_table", {}))
    wanted = [n for n in ("mixed3a_pre_relu", "mixed3b_pre_relu") if n in names]
    return wanted or [n for n in names if n.endswith("_pre_relu")][:2]


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return -1


def memory_child(args: argparse.Namespace) -> None:
    """Scan ``args.memory_child`` procedural images; print peak RSS growth and tracemalloc peak as JSON."""
    torch.set_num_threads(args.threads)
    name, weights, net, size = _model(args.model, args.size)
    layers = args.layers or _default_layers(net)
    scan(net, RandomStream(args.batch, size, seed=1), layers, k=args.k, batch_size=args.batch, progress=False)  # warm
    rss_before = _vm("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
        reset = True
    except OSError:
        reset = False
    tracemalloc.start()
    state = scan(net, RandomStream(args.memory_child, size), layers, k=args.k, batch_size=args.batch, progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    held = [t for ex in state.examples.layers.values() for t in ex.tensors().values()]
    held += [state.sample.index, state.sample.key, *state.sample.values.values(), *state.sample.pos.values()]
    state_bytes = sum(t.numel() * t.element_size() for t in held)
    state_bytes += sum(getattr(s, f).nbytes for s in state.stats.values() for f in _ARRAYS)
    print(json.dumps({"images": state.seen, "state_mb": state_bytes / 2**20, "rss_before_mb": rss_before / 2**20,
                      "peak_rss_growth_mb": (_vm("VmHWM") - rss_before) / 2**20 if reset else None,
                      "peak_rss_mb": _vm("VmHWM") / 2**20, "tracemalloc_peak_mb": peak / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="zoo model (default: shapes if bundled, else inceptionv1)")
    parser.add_argument("--layers", nargs="*", default=None)
    parser.add_argument("--size", type=int, default=None, help="input size (default: the card's; 64 for inceptionv1)")
    parser.add_argument("--images", type=int, default=1024, help="in-memory images per timed case")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-sizes", type=int, nargs=2, default=[512, 4096])
    parser.add_argument("--name", default="examples_scan", help="result file benchmarks/results/NAME.json")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        return memory_child(args)

    torch.set_num_threads(args.threads)
    name, weights, net, size = _model(args.model, args.size)
    layers = args.layers or _default_layers(net)
    images = next(RandomStream(args.images, size).batches(args.images))[1]
    deepest = layers  # capture stops after the last of them to run, as the scan's capture does

    def forward():
        with torch.no_grad():
            for _, x in InMemory(images).batches(args.batch):
                mechscope.capture(net, x, deepest)

    def full_scan():
        scan(net, InMemory(images), layers, k=args.k, batch_size=args.batch, progress=False)

    times = interleaved({"forward": forward, "scan": full_scan}, args.rounds, warmup=1)
    ratio = paired_ratio(times["forward"], times["scan"])  # forward time / scan time = scan throughput / forward's
    best = min(times["forward"]) / min(times["scan"])  # best-of-rounds: least disturbed by other load
    throughput = {k: args.images / statistics.median(v) for k, v in times.items()}

    memory = {}
    for n in args.memory_sizes:
        cmd = [sys.executable, __file__, "--memory-child", str(n), "--batch", str(args.batch), "--k", str(args.k),
               "--threads", str(args.threads), "--size", str(size), "--model", name]
        if args.layers:
            cmd += ["--layers", *args.layers]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        memory[str(n)] = json.loads(out.strip().splitlines()[-1])

    result = {
        "benchmark": "examples_scan",
        "setup": {"model": name, "weights": weights, "layers": layers, "size": size, "images": args.images, "batch": args.batch,
                  "k": args.k, "rounds": args.rounds, "bins": 256, "sample": 64},
        "machine": machine(),
        "images_per_second": throughput,
        "scan_over_forward_throughput": ratio,
        "scan_over_forward_throughput_best_of_rounds": best,
        "target": 0.85,
        "memory": memory,
    }
    path = write(args.name, result)
    print(f"{name} ({weights} weights) at {size}px, layers {layers}, batch {args.batch}, k {args.k}, {args.rounds} interleaved rounds "
          f"on {result['machine']['device']} ({result['machine']['cpu']}, {args.threads} thread(s))")
    print(f"  forward {throughput['forward']:8.1f} img/s   scan {throughput['scan']:8.1f} img/s   "
          f"ratio {ratio['median']:.3f} (min {ratio['min']:.3f}, max {ratio['max']:.3f}; best-of-rounds {best:.3f}; "
          "target >= 0.85)")
    for n, m in memory.items():
        growth = m["peak_rss_growth_mb"]
        print(f"  scan of {n:>5} images: state {m['state_mb']:.2f} MB, peak RSS growth "
              f"{growth if growth is None else round(growth, 1)} MB, tracemalloc peak {m['tracemalloc_peak_mb']:.2f} MB")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
