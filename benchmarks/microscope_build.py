"""Microscope build time per unit, split by kind of evidence, on the bundled organisms.

Each kind is timed on its own, in one run, by building the same store in steps (what is already there is
skipped): feature visualizations (positive and negative, one batch per layer), then tuning curves, then
upstream/downstream links, then the dataset evidence (examples, statistics, distribution plots and quilts, the
top example's attribution); then a rebuild with nothing to do (the incremental check) and the static export.
Then, with ``--ray ADDRESS``, the fan-out: the same vision build (feature visualizations, tuning, links) into
fresh stores in this process and on that Ray cluster, alternating, ``--rounds`` times (paired ratio).  Last, the head pages of both
attention-only organisms (per head) and the toy-model pages of the intro experiment (per instance).

    python benchmarks/microscope_build.py [--units 8] [--steps 128] [--threads 2] [--rounds 2] [--ray ADDRESS]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _common import machine, write
from mechscope.compute.engine import InProcess, engine
from mechscope.data.shapes import ShapesDataset
from mechscope.microscope.build import build
from mechscope.microscope.heads import build_heads
from mechscope.microscope.options import DatasetEvidence, Evidence, Links
from mechscope.microscope.site import export
from mechscope.microscope.toy import build_toy
from mechscope.zoo.registry import bundled_tokenizer, load

LAYERS = ["mixed3a", "mixed3b"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=8, help="units per layer")
    parser.add_argument("--steps", type=int, default=128, help="feature-visualization steps")
    parser.add_argument("--k", type=int, default=4, help="upstream units per unit")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=1024, help="items of the shapes world scanned")
    parser.add_argument("--rounds", type=int, default=2, help="paired rounds of the in-process vs Ray build")
    parser.add_argument("--ray", default=None, help="a Ray cluster's address: compare the build there with this "
                                                    "process's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = load("shapes", device="cpu")
    units = args.units * len(LAYERS)
    times = {}
    with tempfile.TemporaryDirectory() as d:
        store = Path(d) / "store"
        common = {"units_per_layer": args.units, "evidence": Evidence(steps=args.steps, size=64), "progress": False}
        links = {"links": Links({"mixed3b": "mixed3a"}, k=args.k)}
        data = {"dataset": DatasetEvidence(ShapesDataset(n=args.images, size=64, seed=7), f"shapes:{args.images}:7")}
        featvis_only = {"evidence": Evidence(steps=args.steps, size=64, tuning=False)}
        for kind, extra in (("featvis", featvis_only), ("tuning", {}), ("links", links),
                            ("dataset", {**links, **data})):
            start = time.perf_counter()
            build(net, "shapes", LAYERS, store, **{**common, **extra})
            times[kind] = time.perf_counter() - start
        start = time.perf_counter()
        counts = build(net, "shapes", LAYERS, store, **common, **links, **data)
        times["rebuild_nothing_to_do"] = time.perf_counter() - start
        assert counts["built"] == 0, counts
        start = time.perf_counter()
        site = export(store, Path(d) / "site")
        times["export"] = time.perf_counter() - start
        engines = {"in-process": InProcess(), "ray": engine(args.ray)} if args.ray else {}
        fanout: dict[str, list[float]] = {name: [] for name in engines}
        for r in range(args.rounds if engines else 0):
            for name in list(engines) if r % 2 == 0 else list(engines)[::-1]:
                start = time.perf_counter()
                build(net, "shapes", LAYERS, Path(d) / f"{name}_{r}", **common, **links, engine=engines[name])
                fanout[name].append(time.perf_counter() - start)
        heads = {}
        for name in ("attn-only-1l", "attn-only-2l"):
            model = load(name, device="cpu")
            start = time.perf_counter()
            n_heads = build_heads(model, name, store, tokenizer=bundled_tokenizer(name), progress=False)["built"]
            heads[name] = {"heads": n_heads, "seconds": time.perf_counter() - start}
        start = time.perf_counter()
        toy = build_toy(store, "intro", progress=False)
        toy_seconds = time.perf_counter() - start
    linked = args.units   # only mixed3b's units get upstream links (mixed3a is their source)
    per_unit = {"featvis": times["featvis"] / units, "tuning": times["tuning"] / units, "links": times["links"] / linked,
                "dataset": times["dataset"] / units}
    kinds = ("featvis", "tuning", "links", "dataset")
    total = sum(times[k] for k in kinds)
    split = {k: times[k] / total for k in kinds}
    ratios = sorted(a / b for a, b in zip(fanout.get("in-process", []), fanout.get("ray", [])))
    speedup = (ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:][:2]) / 2
               ) if ratios else None
    print(f"shapes {', '.join(LAYERS)}: {args.units} units per layer, {args.steps} feature-visualization steps at "
          f"64 px, {args.k} upstream units, {args.threads} threads")
    print(f"  feature visualizations  {times['featvis']:7.2f} s  ({per_unit['featvis']:.2f} s per unit, positive "
          f"and negative, {100 * split['featvis']:.0f} % of the build)")
    print(f"  tuning curves           {times['tuning']:7.2f} s  ({per_unit['tuning']:.2f} s per unit, "
          f"{100 * split['tuning']:.0f} %)")
    print(f"  upstream/downstream     {times['links']:7.2f} s  ({per_unit['links']:.2f} s per linked unit, "
          f"{100 * split['links']:.0f} %)")
    print(f"  dataset evidence        {times['dataset']:7.2f} s  ({per_unit['dataset']:.2f} s per unit: {args.images} "
          f"images scanned, examples, statistics, plots, quilts, top-example attribution; "
          f"{100 * split['dataset']:.0f} %)")
    print(f"  rebuild, nothing to do  {times['rebuild_nothing_to_do']:7.2f} s")
    print(f"  export ({site['pages']} pages, {site['pngs']} PNGs)  {times['export']:7.2f} s")
    if ratios:
        print(f"  vision build in-process / on Ray ({engines['ray'].workers} workers): "
              f"{', '.join(f'{t:.1f}' for t in fanout['in-process'])} s / "
              f"{', '.join(f'{t:.1f}' for t in fanout['ray'])} s -> Ray {speedup:.2f}x as fast (median paired ratio)")
    for name, h in heads.items():
        print(f"  head pages of {name}: {h['heads']} heads in {h['seconds']:.2f} s "
              f"({h['seconds'] / max(1, h['heads']):.2f} s per head)")
    print(f"  toy-model pages of intro (10,000 steps, best of 3): {toy['built']} instances in {toy_seconds:.1f} s")
    path = write("microscope_build", {"machine": machine(), "settings": vars(args), "layers": LAYERS,
                                      "seconds": times, "seconds_per_unit": per_unit, "share_of_build": split,
                                      "export": site, "fanout_seconds": fanout, "ray_speedup": speedup,
                                      "heads": heads, "toy_intro": {"instances": toy["built"],
                                                                    "seconds": toy_seconds}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
