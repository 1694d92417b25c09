"""The full shapes atlas: every unit of every main layer (``zoo.listing.atlas_layers``: 944 units), with feature
visualizations, negatives, tuning curves, links to the layer below with their attribution, and dataset evidence
on 1,024 images.  Writes ``benchmarks/results/atlas_full.json``.

    PYTHONPATH=src python benchmarks/atlas_full.py            # the whole atlas, timed layer by layer
    PYTHONPATH=src python benchmarks/atlas_full.py --quick    # one whole slice per layer, projected to all
    PYTHONPATH=src python benchmarks/atlas_full.py --quick --layers mixed4a,mixed4b   # some layers only
    PYTHONPATH=src python benchmarks/atlas_full.py --ray 127.0.0.1:6379 --out atlas_full_ray   # every unit, on Ray

Per layer it builds the first ``n`` units into a fresh store, so the build's dataset scan runs for that layer
alone; the scan is timed on its own too (``scan_s``: one pass over the images up to that layer), and so is the
layer's tuning pass (``tuning_s``: the stimuli's forward pass, which the build runs once per layer whatever its
number of units).  ``--quick`` builds one whole slice: ``n`` is the number of units the in-process build puts in
each of the layer's ``ceil(width / SLICE)`` slices (one feature-visualization batch each), so the measured slice
costs what each of the layer's slices costs; a layer then projects to ``tuning_s + slices x (build_s - scan_s -
tuning_s)``.  (A fraction of a layer would be a smaller batch, which costs more per unit: it over-projected.)
The whole atlas is one scan of all layers together (``all_layers_scan_s``: the build's dataset evidence is one
pass for every layer) plus each layer's projection.  ``cpu_s`` (this process's CPU time) is beside each wall time:
on a machine shared with other work it moves less than the wall time does.  ``--ray ADDRESS`` builds on that Ray
cluster (``compute.engine``); only every unit, not ``--quick``: Ray's slices depend on the number of units built
(about two per worker), so a slice of a Ray build would not cost what the whole layer's slices do.  Its CPU times
are the driver's alone.
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

from mechscope.data.shapes import ShapesDataset  # noqa: E402
from mechscope.microscope.build import SLICE, _slice_size, build  # noqa: E402
from mechscope.microscope.options import DatasetEvidence, Evidence, Links  # noqa: E402
from mechscope.microscope.evidence import TUNING_ORIENTATIONS  # noqa: E402
from mechscope.vision.evidence.scan import scan  # noqa: E402
from mechscope.vision.families.tuning import radial_tuning_curve  # noqa: E402
from mechscope.zoo.listing import atlas_layers  # noqa: E402
from mechscope.zoo.registry import load  # noqa: E402

TARGET_S = 20 * 60   # the target for the whole atlas on 2 cores
LOAD_AT_START = [round(v, 2) for v in os.getloadavg()]


def _timed(fn, *args, **kwargs) -> tuple[float, float, object]:
    """``(wall s, CPU s of this process, result)`` of ``fn(*args, **kwargs)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _scan_seconds(net: torch.nn.Module, data: ShapesDataset, layers: list[str], k: int) -> tuple[float, float]:
    wall, cpu, _ = _timed(scan, net, data, layers, k=k, progress=False)
    return wall, cpu


def _tuning_seconds(net: torch.nn.Module, layer: str, size: int) -> tuple[float, float]:
    """The tuning stimuli's pass over ``layer`` (the build's once-per-layer cost of its tuning curves)."""
    wall, cpu, _ = _timed(radial_tuning_curve, net, layer, [0], n_orientations=TUNING_ORIENTATIONS, size=size,
                          position="layer_max", progress=False)
    return wall, cpu


def _save(args: argparse.Namespace, widths: dict[str, int], rows: list[dict], all_scan: tuple[float, float],
          done: bool) -> Path:
    projected = all_scan[0] + sum(r["projected_layer_s"] for r in rows)
    projected_cpu = all_scan[1] + sum(r["projected_layer_cpu_s"] for r in rows)
    return write(args.out, {
        "model": args.model, "images": args.images, "steps": args.steps, "examples_k": args.examples_k,
        "mode": "one whole slice per layer" if args.quick else "every unit", "slice": SLICE,
        "units": sum(widths.values()), "complete": done, "layers": rows,
        "all_layers_scan_s": round(all_scan[0], 2), "all_layers_scan_cpu_s": round(all_scan[1], 2),
        "projected_total_s": round(projected, 1) if done else None,
        "projected_total_cpu_s": round(projected_cpu, 1) if done else None,
        "target_s": TARGET_S, "machine": machine(), "engine": f"ray at {args.ray}" if args.ray else "in-process",
        "note": "evidence per unit: feature visualization + negative (one batch per slice of up to 32 units), "
                "radial tuning curve (the stimuli once per layer), upstream links (k=4) to the layer below with the "
                "attribution of the top example, dataset examples / statistics / log-prob plot / quilt.",
        "load_average_at_start": LOAD_AT_START,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="build one whole slice of each layer (a feature-visualization batch) and project")
    parser.add_argument("--layers", default=None, help="comma-separated layers (default: all of the atlas)")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=128, help="feature-visualization steps (the build's default)")
    parser.add_argument("--examples-k", type=int, default=8)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--out", default="atlas_full", help="result name under benchmarks/results/")
    parser.add_argument("--ray", default=None, help="a Ray cluster's address: build there (every unit; not --quick)")
    args = parser.parse_args()
    if args.ray and args.quick:
        raise SystemExit("--ray builds every unit: a Ray build slices by the number of units built, so one slice of "
                         "it would not project to a layer (drop --quick)")
    from mechscope.compute.engine import engine

    eng = engine(args.ray) if args.ray else None
    widths = atlas_layers(args.model)
    order = list(widths)
    if args.layers:
        wanted = args.layers.split(",")
        unknown = sorted(set(wanted) - set(order))
        if unknown:
            raise SystemExit(f"unknown layers {unknown}; the atlas has {order}")
        widths = {layer: widths[layer] for layer in order if layer in wanted}
    layers = list(widths)
    net = load(args.model, device="cpu").eval()
    data = ShapesDataset(args.images, size=64, seed=7)
    label = f"shapes:{args.images}:7"
    evidence = Evidence(steps=args.steps, size=64)
    print(f"{args.model}: {len(layers)} layers, {sum(widths.values())} units; building "
          f"{'one whole slice of each layer' if args.quick else 'all'}, {args.images} images, "
          f"{torch.get_num_threads()} torch threads, load {os.getloadavg()[0]:.1f}", flush=True)
    all_scan = _scan_seconds(net, data, layers, args.examples_k)
    print(f"one scan of all layers: {all_scan[0]:.1f} s", flush=True)
    rows = []
    for layer in layers:
        below = order[order.index(layer) - 1] if order.index(layer) else None
        width = widths[layer]
        slices = -(-width // _slice_size(width, 1))
        n = -(-width // slices) if args.quick else width     # the size of each of the layer's slices
        scan_s = _scan_seconds(net, data, [layer], args.examples_k)
        tuning_s = _tuning_seconds(net, layer, 64)
        with tempfile.TemporaryDirectory() as out:
            build_s, build_cpu, counts = _timed(
                build, net, args.model, [layer], out, units_per_layer=n, evidence=evidence,
                links=Links({layer: below} if below else {}, k=4),
                dataset=DatasetEvidence(data, label, args.examples_k), engine=eng, progress=False)
        # the n units' cost without the layer's scan and tuning pass (both once per layer, counted apart)
        per_slice = [max(b - s - t, 0.0) for b, s, t in
                     ((build_s, scan_s[0], tuning_s[0]), (build_cpu, scan_s[1], tuning_s[1]))]
        scale = width / n            # slices of the layer (whole ones in --quick; 1 when every unit was built)
        row = {"layer": layer, "width": width, "slices": slices, "units_built": n, "built": counts["built"],
               "build_s": round(build_s, 2), "build_cpu_s": round(build_cpu, 2),
               "scan_s": round(scan_s[0], 2), "scan_cpu_s": round(scan_s[1], 2),
               "tuning_s": round(tuning_s[0], 2), "tuning_cpu_s": round(tuning_s[1], 2),
               "per_unit_s": round(per_slice[0] / n, 3), "per_unit_cpu_s": round(per_slice[1] / n, 3),
               "projected_layer_s": round(tuning_s[0] + per_slice[0] * scale, 1),
               "projected_layer_cpu_s": round(tuning_s[1] + per_slice[1] * scale, 1),
               "load_average": [round(v, 2) for v in os.getloadavg()]}
        rows.append(row)
        print(f"{layer:<10} {n:>4}/{width:<4} units ({slices} slices): build {build_s:6.1f} s (scan {scan_s[0]:5.1f} s, "
              f"tuning pass {tuning_s[0]:4.1f} s), {row['per_unit_s']:5.2f} s/unit -> whole layer "
              f"{row['projected_layer_s']:7.1f} s (CPU {row['projected_layer_cpu_s']:7.1f} s), "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
        _save(args, widths, rows, all_scan, done=len(rows) == len(layers))   # a partial run is kept
    projected = all_scan[0] + sum(r["projected_layer_s"] for r in rows)
    print(f"projected: {projected / 60:.1f} min (target {TARGET_S / 60:.0f} min)", flush=True)
    path = _save(args, widths, rows, all_scan, done=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
