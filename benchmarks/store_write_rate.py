"""The single writer's raw rate: rows + PNG files into a fresh store in one transaction (``put_png`` + ``put_rows``),
without drawing anything, at the size mix of the mixed4a ``driver_rate`` store (1,580 PNGs, 13.5 kB each).
Writes ``benchmarks/results/store_write_rate.json``.

    PYTHONPATH=src python benchmarks/store_write_rate.py [--rows 1580] [--png-bytes 13504] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402

from mechscope.store import open_store, put_png, put_rows, transaction  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1580)
    parser.add_argument("--png-bytes", type=int, default=13504)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    blobs = [b"\x89PNG\r\n\x1a\n" + os.urandom(args.png_bytes - 8) for _ in range(args.rows)]
    walls, cpus = [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as d:
            store = open_store(d)
            wall, cpu = time.perf_counter(), time.process_time()
            with transaction(store):
                put_rows(store, "figures", [{"model": "m", "layer": "l", "channel": i, "kind": "featvis",
                                             "settings": {"steps": 128}, "png": put_png(store, b)}
                                            for i, b in enumerate(blobs)])
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    best = min(walls)
    print(f"{args.rows} rows + PNGs ({args.rows * args.png_bytes / 1e6:.1f} MB): best {best:.2f} s -> "
          f"{args.rows / best:.0f} rows/s, {args.rows * args.png_bytes / best / 1e6:.1f} MB/s")
    path = write("store_write_rate", {"machine": machine(), "settings": vars(args), "wall_s": walls, "cpu_s": cpus,
                                      "rows_per_s": round(args.rows / best), "mb_per_s":
                                      round(args.rows * args.png_bytes / best / 1e6, 1),
                                      "load_average": [round(v, 2) for v in os.getloadavg()]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
