"""Wall time of one full feature visualization: 512 Lucid-default steps of a unit of InceptionV1 (random weights).

Run: ``.venv/bin/python benchmarks/render_time.py [--unit mixed4a:476] [--steps 512] [--size 128]``
Writes ``benchmarks/results/render_time.json``.
"""

from __future__ import annotations

import argparse
import time

import mechscope
from _common import machine, write
from mechscope.vision.featvis.render import render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit", default="mixed4a:476")
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    model = mechscope.load("inceptionv1", weights="random", seed=0, device=args.device)
    render(model, args.unit, steps=2, size=args.size, progress=False)  # warm-up
    start = time.perf_counter()
    result = render(model, args.unit, steps=args.steps, size=args.size, seed=0, progress=False)
    seconds = time.perf_counter() - start
    path = write("render_time", {
        "benchmark": "render_time", "machine": machine(),
        "setup": {"model": "inceptionv1", "weights": "random, seed 0", "unit": args.unit, "steps": args.steps,
                  "size": args.size, "defaults": "FFT + decorrelated colour, standard transforms, Adam 0.05, "
                                                  "redirected ReLU for 16 steps"},
        "seconds": seconds, "ms_per_step": seconds / args.steps * 1e3,
        "objective_first_last": [result.trace[0], result.trace[-1]],
    })
    print(f"{args.steps}-step render of {args.unit} at {args.size} px: {seconds:.1f} s "
          f"({seconds / args.steps * 1e3:.0f} ms/step); objective {result.trace[0]:.3f} -> {result.trace[-1]:.3f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
