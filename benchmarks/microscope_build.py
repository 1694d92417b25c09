"""Microscope build time per unit, split by kind of evidence, on the bundled shapes organism.

Each kind is timed on its own, in one run, by building the same store in steps (what is already there is
skipped): feature visualizations (positive and negative, one batch per layer), then tuning curves, then
upstream/downstream links; then a rebuild with nothing to do (the incremental check) and the static export.
Dataset examples and statistics come from ``mechscope examples`` / ``stats`` (``benchmarks/examples_scan.py``
measures that scan).

    python benchmarks/microscope_build.py [--units 8] [--steps 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _common import machine, write
from mechscope.microscope.build import build
from mechscope.microscope.site import export
from mechscope.zoo.registry import load

LAYERS = ["mixed3a", "mixed3b"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=8, help="units per layer")
    parser.add_argument("--steps", type=int, default=128, help="feature-visualization steps")
    parser.add_argument("--k", type=int, default=4, help="upstream units per unit")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = load("shapes", device="cpu")
    units = args.units * len(LAYERS)
    times = {}
    with tempfile.TemporaryDirectory() as d:
        store = Path(d) / "store"
        common = {"units_per_layer": args.units, "featvis_steps": args.steps, "size": 64, "progress": False}
        for kind, extra in (("featvis", {"tuning": False}), ("tuning", {}),
                            ("links", {"upstream_layer": {"mixed3b": "mixed3a"}, "k": args.k})):
            start = time.perf_counter()
            build(net, "shapes", LAYERS, store, **common, **extra)
            times[kind] = time.perf_counter() - start
        start = time.perf_counter()
        counts = build(net, "shapes", LAYERS, store, **common, upstream_layer={"mixed3b": "mixed3a"}, k=args.k)
        times["rebuild_nothing_to_do"] = time.perf_counter() - start
        assert counts["built"] == 0, counts
        start = time.perf_counter()
        site = export(store, Path(d) / "site")
        times["export"] = time.perf_counter() - start
    linked = args.units   # only mixed3b's units get upstream links (mixed3a is their source)
    per_unit = {"featvis": times["featvis"] / units, "tuning": times["tuning"] / units, "links": times["links"] / linked}
    total = times["featvis"] + times["tuning"] + times["links"]
    split = {k: times[k] / total for k in ("featvis", "tuning", "links")}
    print(f"shapes {', '.join(LAYERS)}: {args.units} units per layer, {args.steps} feature-visualization steps at "
          f"64 px, {args.k} upstream units, {args.threads} threads")
    print(f"  feature visualizations  {times['featvis']:7.2f} s  ({per_unit['featvis']:.2f} s per unit, positive "
          f"and negative, {100 * split['featvis']:.0f} % of the build)")
    print(f"  tuning curves           {times['tuning']:7.2f} s  ({per_unit['tuning']:.2f} s per unit, "
          f"{100 * split['tuning']:.0f} %)")
    print(f"  upstream/downstream     {times['links']:7.2f} s  ({per_unit['links']:.2f} s per linked unit, "
          f"{100 * split['links']:.0f} %)")
    print(f"  rebuild, nothing to do  {times['rebuild_nothing_to_do']:7.2f} s")
    print(f"  export ({site['pages']} pages, {site['pngs']} PNGs)  {times['export']:7.2f} s")
    path = write("microscope_build", {"machine": machine(), "settings": vars(args), "layers": LAYERS,
                                      "seconds": times, "seconds_per_unit": per_unit, "share_of_build": split,
                                      "export": site})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
