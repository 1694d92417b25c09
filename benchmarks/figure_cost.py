"""The atlas's per-unit figures: matplotlib (how the build drew them until it moved to ``mechscope.raster``) against
Pillow (how it draws them now), figure kind by figure kind, on real inputs from the shapes organism.

    PYTHONPATH=src python benchmarks/figure_cost.py [--rounds 15]

Each kind's two drawings run interleaved (old, new, old, new, ...; ``_common.interleaved``) and are printed as a
ratio of medians: wall time, and this process's CPU time beside it (on a loaded machine it moves less).  Writes
``benchmarks/results/figure_cost.json`` with the machine and its load.  The ``old_*`` functions below are the
build's former matplotlib code, kept here as the reference (they call the library's user-facing matplotlib
plots — ``kernel_heatmap``, ``RadialTuning.plot``, ``attribution_map_plot``, ``top_contributors_plot``,
``log_prob_plot`` — as the build did).  ``per_unit_ms`` adds the kinds a full atlas draws once per unit (tuning,
upstream heatmap, downstream bars, attribution, log-probability plot).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, machine, write  # noqa: E402

from mechscope.data.shapes import TASKS, ShapesDataset  # noqa: E402
from mechscope.microscope.evidence import _tuning_png, attribution_figure, bars_png, heatmap_png  # noqa: E402
from mechscope.microscope.layer_evidence import _drops_png  # noqa: E402
from mechscope.plots import agg_figure, png_of  # noqa: E402
from mechscope.vision.circuits.attribution import attribute  # noqa: E402
from mechscope.vision.circuits.graph import upstream_of  # noqa: E402
from mechscope.vision.evidence.scan import scan  # noqa: E402
from mechscope.vision.evidence.scan_store import _layer_plot, _log_prob_png  # noqa: E402
from mechscope.vision.evidence.stats import log_prob_plot  # noqa: E402
from mechscope.vision.families.tuning import radial_tuning_curve  # noqa: E402
from mechscope.zoo.registry import load  # noqa: E402

PER_UNIT = ("tuning", "upstream", "downstream", "attribution", "log_prob")
ATLAS_UNITS = 944   # the full shapes atlas (benchmarks/atlas_full.py)


# ------------------------------------------------------------------------------- the former matplotlib path

def old_heatmap(rows, title):
    from mechscope.vision.circuits.weights import kernel_heatmap

    kernels = torch.stack([r.weights.detach().float().cpu() for r in rows])
    c, kh, kw = kernels.shape
    width, height = max(2.0, 0.35 * c * (kw + 1)), max(1.5, 0.35 * kh + 0.6)
    fig = agg_figure(width, height, layout=None)
    fig.subplots_adjust(left=0.04, right=0.96, bottom=0.04, top=1 - 0.45 / height)
    kernel_heatmap(kernels, fig.add_subplot(1, 1, 1), title=title)
    return png_of(fig)


def old_bars(units, title):
    names, weights = [u["unit"] for u in units], [float(u["weight"]) for u in units]
    fig = agg_figure(max(2.5, 0.5 * len(units) + 1), 2.4, layout=None)
    fig.subplots_adjust(left=0.2, right=0.97, bottom=0.38, top=0.88)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(units)), weights, color=["#b2182b" if w >= 0 else "#2166ac" for w in weights])
    ax.set_xticks(range(len(units)), names, rotation=45, ha="right", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_title(title, fontsize=8)
    return png_of(fig)


def old_attribution(attr, image, k=8):
    from matplotlib.patches import Rectangle

    from mechscope.vision.circuits.attribution import attribution_map_plot, top_contributors_plot

    fig = agg_figure(10.0, 3.2, layout=None)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.14, top=0.88, wspace=0.55)
    ax = fig.add_subplot(1, 3, 1)
    ax.imshow(image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy())
    gx, gy = attr.unit_grid
    h, w = attr.input_size
    x, y = (int(v) for v in attr.positions[0])
    ax.add_patch(Rectangle((y * w / gy - 0.5, x * h / gx - 0.5), w / gy, h / gx, fill=False, edgecolor="yellow",
                           linewidth=1.5))
    ax.set_title(f"top example · {attr.unit} = {float(attr.total[0]):.3g}", fontsize=8)
    ax.set_axis_off()
    attribution_map_plot(attr, 0, ax=fig.add_subplot(1, 3, 2))
    top_contributors_plot(attr, k, 0, ax=fig.add_subplot(1, 3, 3))
    return png_of(fig)


def old_tuning(tuning, channel):
    fig = agg_figure(3.2, 3.2)
    tuning.plot(channel, ax=fig.add_subplot(1, 1, 1, projection="polar"))
    return png_of(fig)


def old_log_prob(stats, channel):
    return png_of(log_prob_plot(stats, stats.layer, channel))


def old_layer_plot(stats, channels):
    cols = min(4, len(channels))
    rows = -(-len(channels) // cols)
    fig = agg_figure(4 * cols, 2.8 * rows, layout=None)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.6 / (2.8 * rows), top=1 - 0.4 / (2.8 * rows), hspace=0.6,
                        wspace=0.3)
    for n, c in enumerate(channels):
        log_prob_plot(stats, stats.layer, c, ax=fig.add_subplot(rows, cols, n + 1))
    return png_of(fig)


def old_drops(drops, title):
    fig = agg_figure(3.2, 2.2, layout=None)
    fig.subplots_adjust(left=0.2, right=0.97, bottom=0.2, top=0.86)
    ax = fig.add_subplot(1, 1, 1)
    values = [drops[t] for t in TASKS]
    ax.bar(range(len(values)), values, color=["#b2182b" if v > 0 else "#2166ac" for v in values])
    ax.set_xticks(range(len(values)), list(TASKS), fontsize=7)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("accuracy drop", fontsize=7)
    ax.set_title(title, fontsize=8)
    return png_of(fig)


# ---------------------------------------------------------------------------------------------------- inputs

def _inputs():
    """Real inputs: the shapes organism's mixed3a tuning, conv2d1 -> conv2d2 links, an attribution of a top
    example of mixed3a to conv2d2, and mixed3a's activation statistics over 256 images."""
    net = load("shapes", device="cpu").eval()
    curves = radial_tuning_curve(net, "mixed3a", [1], n_orientations=72, size=64, position="layer_max",
                                 progress=False)
    found = upstream_of(net, ["conv2d2:0"], "conv2d1", 64, k=4)[0]
    data = ShapesDataset(256, size=64, seed=7)
    state = scan(net, data, ["mixed3a"], k=4, progress=False)
    ex = state.examples["mixed3a"]
    index, (x, y) = int(ex.top_index[1][0]), (int(v) for v in ex.top_pos[1][0])
    image = data.sample([index])[0][0]
    attr = attribute(net, image[None], f"mixed3a:1@{x},{y}", "conv2d2")
    units = [{"unit": r.unit, "weight": r.strength if r.sign == "+" else -r.strength} for r in found]
    units.append({"unit": "mixed3b:17", "weight": -0.3})
    drops = {t: v for t, v in zip(TASKS, (0.1, -0.02, 0.3, 0.0))}
    stats = state.stats["mixed3a"]
    up, down, abl = "conv2d1 -> conv2d2:0", "conv2d1:5 -> downstream", "zero ablation of mixed3a:1"
    return {
        "tuning": (lambda: old_tuning(curves, 1), lambda: _tuning_png(curves, 1)),
        "upstream": (lambda: old_heatmap(found, up), lambda: heatmap_png(found, up)),
        "downstream": (lambda: old_bars(units, down), lambda: bars_png(units, down)),
        "attribution": (lambda: old_attribution(attr, image), lambda: attribution_figure(attr, image)),
        "log_prob": (lambda: old_log_prob(stats, 1), lambda: _log_prob_png(stats, 1)),
        "layer_log_prob_16": (lambda: old_layer_plot(stats, list(range(16))),
                              lambda: _layer_plot(stats, list(range(16)))),
        "ablation": (lambda: old_drops(drops, abl), lambda: _drops_png(drops, abl)),
    }


def _cpu_timed(fn, into: list[float]):
    """``fn`` that also appends this process's CPU seconds per call to ``into`` (less moved by other load)."""
    def run():
        start = time.process_time()
        fn()
        into.append(time.process_time() - start)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--note", default="", help="what else ran on the machine")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_start = [round(v, 2) for v in os.getloadavg()]
    kinds, rows = _inputs(), {}
    for kind, (old, new) in kinds.items():
        rounds = max(3, args.rounds // 5) if kind == "layer_log_prob_16" else args.rounds
        cpu: dict[str, list[float]] = {"matplotlib": [], "raster": []}
        cases = {"matplotlib": _cpu_timed(old, cpu["matplotlib"]), "raster": _cpu_timed(new, cpu["raster"])}
        times = interleaved(cases, rounds=rounds, warmup=1)
        o, n = statistics.median(times["matplotlib"]) * 1e3, statistics.median(times["raster"]) * 1e3
        oc, nc = (statistics.median(cpu[k][1:]) * 1e3 for k in ("matplotlib", "raster"))   # [0]: the warm-up
        ratios = [a / b for a, b in zip(times["matplotlib"], times["raster"], strict=True)]
        rows[kind] = {"matplotlib_ms": round(o, 2), "raster_ms": round(n, 2), "speedup": round(o / n, 1),
                      "speedup_min_max": [round(min(ratios), 1), round(max(ratios), 1)],
                      "matplotlib_cpu_ms": round(oc, 2), "raster_cpu_ms": round(nc, 2),
                      "cpu_speedup": round(oc / nc, 1),
                      "rounds": rounds, "png_bytes": {"matplotlib": len(old()), "raster": len(new())}}
        print(f"{kind:<18} matplotlib {o:8.1f} ms (CPU {oc:7.1f})   raster {n:7.1f} ms (CPU {nc:6.1f})   "
              f"{o / n:5.1f}x (CPU {oc / nc:5.1f}x)", flush=True)
    per_unit = {k: round(sum(rows[kind][k] for kind in PER_UNIT), 1)
                for k in ("matplotlib_ms", "raster_ms", "matplotlib_cpu_ms", "raster_cpu_ms")}
    print(f"per unit ({', '.join(PER_UNIT)}): matplotlib {per_unit['matplotlib_ms']} ms (CPU "
          f"{per_unit['matplotlib_cpu_ms']}), raster {per_unit['raster_ms']} ms (CPU {per_unit['raster_cpu_ms']})",
          flush=True)
    path = write("figure_cost", {
        "benchmark": "figure_cost", "kinds": rows, "per_unit_ms": per_unit, "per_unit_kinds": list(PER_UNIT),
        "projected_atlas_cpu_s_saved": round((per_unit["matplotlib_cpu_ms"] - per_unit["raster_cpu_ms"])
                                             * ATLAS_UNITS / 1e3, 1),
        "units": ATLAS_UNITS, "torch_threads": 1, "machine": machine(),
        "load_average_at_start": load_start, "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "note": args.note or "timed interleaved, medians of the rounds; ratios are of the same rounds"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
