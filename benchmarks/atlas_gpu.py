"""The full InceptionV1 atlas on one GPU: units/minute of feature visualization and images/s of the dataset scan,
projected to every unit of conv2d0..mixed5b against the issue's target of one GPU-hour.  Writes
``benchmarks/results/atlas_gpu.json`` (only when CUDA is available).

    PYTHONPATH=src python benchmarks/atlas_gpu.py                 # Lucid's defaults: 512 steps at 128 px
    PYTHONPATH=src python benchmarks/atlas_gpu.py --steps 64      # fewer steps, scaled to 512 (cost per step)
    PYTHONPATH=src python benchmarks/atlas_gpu.py --amp           # also bf16 autocast
    PYTHONPATH=src python benchmarks/atlas_gpu.py --smoke         # tiny run on any device; writes nothing

Without CUDA it prints that it needs a GPU and exits 0 without writing results (``--smoke`` runs the same code on
the CPU at toy sizes to check it, and writes nothing either).  Random weights are fine
(``mechscope.load("inceptionv1", weights="random")``): the cost of a render does not depend on the weights.

Feature visualization: per layer of ``zoo.listing.atlas_layers("inceptionv1")`` (the layers ``microscope build
--all-layers`` builds; the two local-response-norm layers repeat their convolution's units and are counted too),
one ``render_units`` batch of ``--batch`` units with their negatives (as the Microscope build renders them: two
images per unit), Lucid's transforms, ``--steps`` steps at ``--size`` px; the first batch of each layer after one
warm-up batch of the deepest layer.  A layer's seconds per unit times its width, summed, is the projected
feature-visualization time (scaled to 512 steps).  Dataset examples: one scan of every layer together (top-k,
statistics, sample: ``vision.evidence.scan``) over ``--scan-images`` random 224-px images, as images/s, projected
to ``--dataset-images`` (default 50,000: ImageNet's validation set, what Microscope's examples came from).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402

import mechscope  # noqa: E402
from mechscope.vision.evidence.scan import scan  # noqa: E402
from mechscope.vision.featvis.render import RenderOptions, render_units  # noqa: E402
from mechscope.zoo.listing import atlas_layers  # noqa: E402

TARGET_S = 3600.0   # the target: the whole atlas in one GPU-hour on one H100-class GPU
LUCID_STEPS = 512


class RandomImages:
    """``n`` random ``[3, size, size]`` images in [0, 1], made on ``device`` batch by batch (no data loading)."""

    def __init__(self, n: int, size: int, device: torch.device) -> None:
        self.n, self.size, self.device = n, size, device

    def __len__(self) -> int:
        return self.n

    def batches(self, batch_size: int, start: int = 0):
        g = torch.Generator(device=self.device).manual_seed(0)
        for lo in range(start, self.n, batch_size):
            hi = min(self.n, lo + batch_size)
            yield list(range(lo, hi)), torch.rand(hi - lo, 3, self.size, self.size, device=self.device, generator=g)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _render_seconds(net: torch.nn.Module, layer: str, width: int, args: argparse.Namespace, amp: bool,
                    device: torch.device) -> tuple[float, int]:
    n = min(width, args.batch)
    options = RenderOptions(steps=args.steps, size=args.size, seed=0, progress=False, amp=amp)
    _sync(device)
    start = time.perf_counter()
    render_units(net, [f"{layer}:{c}" for c in range(n)], negative=True, options=options)
    _sync(device)
    return time.perf_counter() - start, n


def _featvis(net: torch.nn.Module, widths: dict[str, int], args: argparse.Namespace, amp: bool,
             device: torch.device) -> dict:
    deepest = list(widths)[-1]
    _render_seconds(net, deepest, widths[deepest], argparse.Namespace(**{**vars(args), "steps": 2}), amp, device)
    rows, total = [], 0.0
    scale = LUCID_STEPS / args.steps
    for layer, width in widths.items():
        seconds, n = _render_seconds(net, layer, width, args, amp, device)
        per_unit = seconds / n * scale
        total += per_unit * width
        rows.append({"layer": layer, "units": width, "batch_units": n, "seconds": round(seconds, 3),
                     "units_per_min_at_512_steps": round(60 / per_unit, 1),
                     "projected_layer_s": round(per_unit * width, 1)})
        print(f"  {layer:<20} {n:>4} units x2 (neg) in {seconds:7.2f} s at {args.steps} steps -> "
              f"{60 / per_unit:8.1f} units/min at 512 steps; layer {per_unit * width:8.1f} s", flush=True)
    units = sum(widths.values())
    return {"layers": rows, "projected_s": round(total, 1), "units_per_min": round(60 * units / total, 1)}


def _scan(net: torch.nn.Module, layers: list[str], args: argparse.Namespace, amp: bool,
          device: torch.device) -> dict:
    warm = RandomImages(args.scan_batch, 224, device)
    scan(net, warm, layers, k=args.examples_k, batch_size=args.scan_batch, progress=False, amp=amp)
    data = RandomImages(args.scan_images, 224, device)
    _sync(device)
    start = time.perf_counter()
    scan(net, data, layers, k=args.examples_k, batch_size=args.scan_batch, progress=False, amp=amp)
    _sync(device)
    seconds = time.perf_counter() - start
    rate = args.scan_images / seconds
    print(f"  scan of {len(layers)} layers: {args.scan_images} images in {seconds:.2f} s -> {rate:.1f} images/s",
          flush=True)
    return {"images": args.scan_images, "seconds": round(seconds, 2), "images_per_s": round(rate, 1),
            "projected_s": round(args.dataset_images / rate, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=LUCID_STEPS, help="steps measured (scaled to 512)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64, help="units per render_units batch (plus negatives)")
    parser.add_argument("--scan-images", type=int, default=2048)
    parser.add_argument("--scan-batch", type=int, default=128)
    parser.add_argument("--dataset-images", type=int, default=50_000)
    parser.add_argument("--examples-k", type=int, default=8)
    parser.add_argument("--amp", action="store_true", help="also measure with bf16 autocast")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on any device, to check the script; "
                                                              "writes nothing")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("atlas_gpu.py measures a GPU: CUDA is not available here, so nothing was measured or written "
              "(run with --smoke to check the script on the CPU).")
        return
    device = torch.device("cuda" if cuda else "cpu")
    if args.smoke:
        args.steps, args.size, args.batch, args.scan_images, args.scan_batch = 2, 32, 2, 8, 4
    widths = atlas_layers("inceptionv1")
    if args.smoke:
        widths = dict(list(widths.items())[:3])
    net = mechscope.load("inceptionv1", weights="random", seed=0, device=device).eval()
    units = sum(widths.values())
    print(f"inceptionv1 on {device} ({torch.cuda.get_device_name() if cuda else 'CPU'}): {len(widths)} layers, "
          f"{units} units; {args.steps} steps at {args.size} px, batches of {args.batch} units + negatives",
          flush=True)
    results = {}
    for amp in (False, True) if args.amp else (False,):
        name = "bf16_autocast" if amp else "float32"
        print(f"{name}: feature visualization", flush=True)
        featvis = _featvis(net, widths, args, amp, device)
        print(f"{name}: dataset examples", flush=True)
        examples = _scan(net, list(widths), args, amp, device)
        total = featvis["projected_s"] + examples["projected_s"]
        results[name] = {"featvis": featvis, "examples": examples, "projected_total_s": round(total, 1),
                         "projected_gpu_hours": round(total / 3600, 2), "meets_target": total <= TARGET_S}
        print(("[smoke: toy sizes, not a projection] " if args.smoke else "")
              + f"{name}: projected atlas {total / 60:.1f} min (feature visualization {featvis['projected_s'] / 60:.1f} "
              f"min at {featvis['units_per_min']:.0f} units/min, examples {examples['projected_s'] / 60:.1f} min "
              f"for {args.dataset_images} images); target {TARGET_S / 60:.0f} min: "
              f"{'met' if total <= TARGET_S else 'NOT met'}", flush=True)
    if args.smoke or not cuda:
        print("smoke run: nothing written")
        return
    path = write("atlas_gpu", {
        "model": "inceptionv1 (random weights)", "units": units, "layers": widths, "steps_measured": args.steps,
        "steps_projected": LUCID_STEPS, "size": args.size, "batch_units": args.batch, "negatives": True,
        "dataset_images": args.dataset_images, "examples_k": args.examples_k, "target_s": TARGET_S,
        "results": results, "machine": machine(),
        "note": "feature visualization per layer: one render_units batch of its first units with negatives "
                "(Lucid's transforms, Adam 0.05, redirected ReLU), seconds per unit scaled to 512 steps x the "
                "layer's width; dataset examples: one scan of all layers over random 224-px images made on the "
                "GPU (no data loading or decoding counted)."})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
