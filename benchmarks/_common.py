"""Shared helpers of the benchmark scripts: interleaved timing and result files."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mechscope.devices import machine_info

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    """What the numbers were measured on (``mechscope.devices.machine_info``, plus the device)."""
    info = machine_info()
    return {"cpu": info["cpu"], "cores": info["cores"], "torch_threads": info["threads"], "torch": info["torch"],
            "python": info["python"],
            "device": "cuda:" + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def interleaved(cases: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, list[float]]:
    """Time each case once per round, in turn (A B C A B C ...), so that drift hits all alike."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(a: list[float], b: list[float]) -> dict[str, float]:
    """Median, min and max of the round-by-round ratios a/b."""
    r = [x / y for x, y in zip(a, b, strict=True)]
    return {"median": statistics.median(r), "min": min(r), "max": max(r)}


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
