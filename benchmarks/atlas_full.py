"""The full shapes atlas: every unit of every main layer (``zoo.listing.atlas_layers``: 944 units), with feature
visualizations, negatives, tuning curves, links to the layer below with their attribution, and dataset evidence
on 1,024 images.  Writes ``benchmarks/results/atlas_full.json``.

    PYTHONPATH=src python benchmarks/atlas_full.py            # the whole atlas, timed layer by layer
    PYTHONPATH=src python benchmarks/atlas_full.py --quick    # 1/16 of each layer's units, projected to all

Per layer it builds the first ``n`` units (all of them, or ``ceil(fraction x width)``) into a fresh store, so the
build's dataset scan runs for that layer alone; the scan is timed on its own too (``scan_s``: one pass over the
images up to that layer), so the per-unit cost is ``(build_s - scan_s) / n``.  The projection of the whole atlas
is one scan of all layers together (``all_layers_scan_s``: the build's dataset evidence is one pass for every
layer) plus each layer's per-unit cost x its width.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402

from mechscope.data.shapes import ShapesDataset  # noqa: E402
from mechscope.microscope.build import build  # noqa: E402
from mechscope.microscope.options import DatasetEvidence, Evidence, Links  # noqa: E402
from mechscope.vision.evidence.scan import scan  # noqa: E402
from mechscope.zoo.listing import atlas_layers  # noqa: E402
from mechscope.zoo.registry import load  # noqa: E402

TARGET_S = 20 * 60   # the target for the whole atlas on 2 cores


def _scan_seconds(net: torch.nn.Module, data: ShapesDataset, layers: list[str], k: int) -> float:
    start = time.perf_counter()
    scan(net, data, layers, k=k, progress=False)
    return time.perf_counter() - start


def _save(args: argparse.Namespace, fraction: float, widths: dict[str, int], rows: list[dict], all_scan: float,
          done: bool) -> Path:
    projected = all_scan + sum(r["projected_layer_s"] for r in rows)
    return write("atlas_full", {
        "model": args.model, "images": args.images, "steps": args.steps, "examples_k": args.examples_k,
        "fraction": fraction, "units": sum(widths.values()), "complete": done, "layers": rows,
        "all_layers_scan_s": round(all_scan, 2), "projected_total_s": round(projected, 1) if done else None,
        "target_s": TARGET_S, "machine": machine(),
        "note": "evidence per unit: feature visualization + negative (one batch per slice of 32 units), radial "
                "tuning curve, upstream links (k=4) to the layer below with the attribution of the top example, "
                "dataset examples / statistics / log-prob plot / quilt.  A small fraction over-projects layers whose "
                "visualizations batch 32 units at once.",
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", nargs="?", const=1 / 16, type=float, default=None, metavar="FRACTION",
                        help="build only this fraction of each layer's units (default 1/16) and project")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=128, help="feature-visualization steps (the build's default)")
    parser.add_argument("--examples-k", type=int, default=8)
    parser.add_argument("--model", default="shapes")
    args = parser.parse_args()
    fraction = args.quick or 1.0
    widths = atlas_layers(args.model)
    layers = list(widths)
    net = load(args.model, device="cpu").eval()
    data = ShapesDataset(args.images, size=64, seed=7)
    label = f"shapes:{args.images}:7"
    evidence = Evidence(steps=args.steps, size=64)
    print(f"{args.model}: {len(layers)} layers, {sum(widths.values())} units; building "
          f"{'all' if fraction == 1 else f'{fraction:.3g} of each layer'}, {args.images} images, "
          f"{torch.get_num_threads()} torch threads", flush=True)
    all_scan = _scan_seconds(net, data, layers, args.examples_k)
    print(f"one scan of all layers: {all_scan:.1f} s", flush=True)
    rows = []
    for below, layer in zip([None, *layers], layers):
        n = max(1, math.ceil(fraction * widths[layer]))
        scan_s = _scan_seconds(net, data, [layer], args.examples_k)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            counts = build(net, args.model, [layer], out, units_per_layer=n, evidence=evidence,
                           links=Links({layer: below} if below else {}, k=4),
                           dataset=DatasetEvidence(data, label, args.examples_k), progress=False)
            build_s = time.perf_counter() - start
        per_unit = max(build_s - scan_s, 0.0) / n
        row = {"layer": layer, "width": widths[layer], "units_built": n, "built": counts["built"],
               "build_s": round(build_s, 2), "scan_s": round(scan_s, 2), "per_unit_s": round(per_unit, 3),
               "projected_layer_s": round(per_unit * widths[layer], 1)}
        rows.append(row)
        print(f"{layer:<10} {n:>4}/{widths[layer]:<4} units: build {build_s:6.1f} s (scan {scan_s:5.1f} s), "
              f"{per_unit:5.2f} s/unit -> whole layer {row['projected_layer_s']:7.1f} s", flush=True)
        _save(args, fraction, widths, rows, all_scan, done=len(rows) == len(layers))   # a partial run is kept
    projected = all_scan + sum(r["projected_layer_s"] for r in rows)
    print(f"projected full atlas: {projected / 60:.1f} min (target {TARGET_S / 60:.0f} min)", flush=True)
    path = _save(args, fraction, widths, rows, all_scan, done=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
