"""How much early exit saves: capturing conv2d2 / mixed3b vs a full InceptionV1 forward pass, side by side.

Run: ``.venv/bin/python benchmarks/capture_early_exit.py [--rounds 15] [--batch 8] [--size 224] [--grad]``
Writes ``benchmarks/results/capture_early_exit.json``.
"""

from __future__ import annotations

import argparse
import statistics

import torch

import mechscope
from _common import interleaved, machine, paired_ratio, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--grad", action="store_true", help="time forward+backward (as feature visualization does)")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    model = mechscope.load("inceptionv1", weights="random", seed=0, device=args.device)
    device = next(model.parameters()).device
    x = torch.rand(args.batch, 3, args.size, args.size, device=device, requires_grad=args.grad)

    def run(fn):
        def timed():
            with torch.set_grad_enabled(args.grad):
                out = fn()
                if args.grad:
                    out.sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
        return timed

    cases = {
        "full_forward": run(lambda: model(x)),
        "capture_conv2d2": run(lambda: mechscope.capture(model, x, "conv2d2")["conv2d2"]),
        "capture_mixed3b": run(lambda: mechscope.capture(model, x, "mixed3b")["mixed3b"]),
        "capture_mixed3b_no_early_exit": run(lambda: mechscope.capture(model, x, "mixed3b", early_exit=False)["mixed3b"]),
    }
    times = interleaved(cases, args.rounds)
    full = times["full_forward"]
    result = {
        "benchmark": "capture_early_exit",
        "setup": {"model": "inceptionv1", "batch": args.batch, "size": args.size, "grad": args.grad,
                  "rounds": args.rounds},
        "machine": machine(),
        "median_seconds": {k: statistics.median(v) for k, v in times.items()},
        "ratio_to_full_forward": {k: paired_ratio(v, full) for k, v in times.items() if k != "full_forward"},
    }
    path = write("capture_early_exit" + ("_grad" if args.grad else ""), result)
    print(f"InceptionV1, batch {args.batch} x {args.size}px, {'forward+backward' if args.grad else 'forward'}, "
          f"{args.rounds} interleaved rounds on {result['machine']['device']} ({result['machine']['cpu']})")
    for k, v in times.items():
        ratio = result["ratio_to_full_forward"].get(k, {"median": 1.0})["median"]
        print(f"  {k:<32} median {statistics.median(v) * 1e3:8.1f} ms   ratio to full forward {ratio:.3f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
