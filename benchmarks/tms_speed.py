"""``train_toy`` vs a plain reference training loop of the Toy Models of Superposition colab's kind, side by side.

The reference (below, :class:`ReferenceToy` and :func:`reference_train`) is written the way the paper's notebook
trains: an ``nn.Module`` holding ``W [instances, features, hidden]`` (``xavier_normal_``) and ``b_final``, a forward
by ``einsum``, a ``generate_batch`` that draws ``torch.rand`` values and a ``torch.rand <= p`` mask every step, the
importance-weighted MSE ``(importance * (out - batch)**2).mean((0, 2)).sum()``, ``torch.optim.AdamW(lr=1e-3)`` with
its default weight decay 0.01, and a Python loop of ``zero_grad / backward / step`` with a per-step (constant) lr
schedule hook and a loss read-out every ``steps // 100`` steps.  Ours: ``train_toy(..., weight_decay=0.01)`` with
the same sizes, batch, lr, schedule and number of steps.

Two settings of the paper: ``intro`` (n=5 features, m=2 hidden, 10 instances, importance 0.9^i, densities
``20 ** -linspace(0, 1)``, i.e. 1 .. 0.05) and ``sweep`` (n=20, m=5, 7 instances, importance 0.7^i, densities
``20 ** -linspace(0, 1)``).  Each round trains both sides from scratch, interleaved (ours, reference, ours, ...);
reported are steps/s and the paired ratio ours/reference speed (median, min, max over rounds; target >= 3), and each
side's final loss per instance (mean over the last 100 steps) - close but not identical, the data streams differ.

A third setting, ``geometry``, is the paper's geometry sweep at its own scale (``superposition.geometry``): n=400,
m=30, uniform importance, the 28 densities of ``density_grid()`` x 3 seeds = 84 instances: ours is
``geometry_sweep`` with its defaults (one instance per model, sparse inputs below ``SPARSE_BELOW``, 2 worker threads
of one core each), the reference trains all 84 at once as the notebook would, with ``--geometry-threads`` intra-op
threads (default 2: both sides get this machine's two cores).  Its sides run ``--geometry-steps`` steps each
(default 200: the notebook-style loop takes minutes per hundred steps here) and the time of the full 10,000-step
sweep is extrapolated from the measured seconds per step (start-up included), stated as such in the JSON
(``extrapolated_seconds_at``).

Run: ``.venv/bin/python benchmarks/tms_speed.py [--steps 10000] [--rounds 3] [--threads 1] [--settings ...]``;
``--quick`` is a seconds-long check (300 steps, 30 for ``geometry``, writes to /tmp).  Writes
``benchmarks/results/tms_speed.json`` (``--out`` to change), keeping the results of settings not run this time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from _common import RESULTS, interleaved, machine, paired_ratio
from mechscope.superposition.geometry import GeometryOptions, density_grid, geometry_sweep
from mechscope.superposition.toy import ToyConfig, train_toy

GEOMETRY_SEEDS = 3
SETTINGS = {
    "intro": dict(n_features=5, n_hidden=2, n_instances=10, importance_rate=0.9),
    "sweep": dict(n_features=20, n_hidden=5, n_instances=7, importance_rate=0.7),
    "geometry": dict(n_features=400, n_hidden=30, n_instances=len(density_grid()) * GEOMETRY_SEEDS,
                     importance_rate=1.0),
}
TARGET = 3.0
FULL_STEPS = 10_000


def densities(n_instances: int, name: str = "") -> torch.Tensor:
    if name == "geometry":   # the geometry sweep: density_grid() once per seed
        return torch.tensor(density_grid(), dtype=torch.float32).repeat(GEOMETRY_SEEDS)
    return 20 ** -torch.linspace(0, 1, n_instances)


# ---- the reference: a plain training loop in the paper's colab style -----------------------------------------------


class ReferenceToy(nn.Module):
    """``n_instances`` ReLU-output toy models, held and trained the way the paper's notebook does."""

    def __init__(self, n_features: int, n_hidden: int, n_instances: int, feature_probability: torch.Tensor,
                 importance: torch.Tensor) -> None:
        super().__init__()
        self.n_features, self.n_instances = n_features, n_instances
        self.W = nn.Parameter(torch.empty((n_instances, n_features, n_hidden)))
        nn.init.xavier_normal_(self.W)
        self.b_final = nn.Parameter(torch.zeros((n_instances, n_features)))
        self.feature_probability = feature_probability[:, None]  # [instances, 1]
        self.importance = importance[None, :]  # [1, features]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = torch.einsum("bif,ifh->bih", features, self.W)
        out = torch.einsum("bih,ifh->bif", hidden, self.W)
        return F.relu(out + self.b_final)

    def generate_batch(self, n_batch: int) -> torch.Tensor:
        feat = torch.rand((n_batch, self.n_instances, self.n_features))
        return torch.where(torch.rand((n_batch, self.n_instances, self.n_features)) <= self.feature_probability,
                           feat, torch.zeros(()))


def constant_lr(step: int, steps: int) -> float:
    return 1.0


def reference_train(model: ReferenceToy, steps: int, n_batch: int = 1024, lr: float = 1e-3,
                    lr_scale=constant_lr) -> torch.Tensor:
    """Train ``model`` in place; returns each instance's loss averaged over the last 100 steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    print_freq = max(1, steps // 100)
    tail = min(100, steps)
    tail_sum = torch.zeros(model.n_instances)
    for step in range(steps):
        step_lr = lr * lr_scale(step, steps)
        for group in opt.param_groups:
            group["lr"] = step_lr
        opt.zero_grad(set_to_none=True)
        batch = model.generate_batch(n_batch)
        out = model(batch)
        per_instance = (model.importance * (out - batch) ** 2).mean((0, 2))
        loss = per_instance.sum()
        loss.backward()
        opt.step()
        if step >= steps - tail:
            tail_sum += per_instance.detach()
        if step % print_freq == 0 or step + 1 == steps:
            _ = loss.item() / model.n_instances  # the notebook's progress-bar read-out
    return tail_sum / tail


# ---- the benchmark -----------------------------------------------------------------------------------------------


def run_setting(name: str, steps: int, rounds: int, batch: int, warmup_steps: int, threads: int = 1) -> dict:
    s = SETTINGS[name]
    cfg = ToyConfig(n_features=s["n_features"], n_hidden=s["n_hidden"], n_instances=s["n_instances"])
    importance = s["importance_rate"] ** torch.arange(cfg.n_features, dtype=torch.float32)
    p = densities(cfg.n_instances, name)
    final: dict[str, list[torch.Tensor]] = {"ours": [], "reference": []}
    counter = {"ours": 0, "reference": 0}

    def ours(n: int = steps, record: bool = True):
        seed = counter["ours"]
        counter["ours"] += 1
        if name == "geometry":   # the sweep as a user runs it
            torch.set_num_threads(threads)
            sweep = geometry_sweep(GeometryOptions(steps=n, batch_size=batch, seed=seed, workers=threads))
            if record:
                final["ours"].append(sweep.losses.reshape(-1))   # seed-major, as p
            return
        run = train_toy(cfg, importance, p[:, None], steps=n, batch_size=batch, lr=1e-3, weight_decay=0.01,
                        schedule="constant", seed=seed, progress=False)
        if record:
            final["ours"].append(run.losses)

    def reference(n: int = steps, record: bool = True):
        torch.manual_seed(counter["reference"])
        counter["reference"] += 1
        torch.set_num_threads(threads)
        losses = reference_train(ReferenceToy(cfg.n_features, cfg.n_hidden, cfg.n_instances, p, importance), n,
                                 n_batch=batch)
        if record:
            final["reference"].append(losses)

    ours(warmup_steps, record=False)
    reference(warmup_steps, record=False)
    times = interleaved({"ours": ours, "reference": reference}, rounds, warmup=0)
    ratio = paired_ratio(times["reference"], times["ours"])  # reference time / our time = our speed / reference's
    med = {k: statistics.median(v) for k, v in times.items()}
    loss = {k: torch.stack(v).mean(0) for k, v in final.items()}  # [instances], mean over rounds (seeds)
    rel = ((loss["ours"] - loss["reference"]).abs() / loss["reference"]).tolist()
    return {
        "config": {"n_features": cfg.n_features, "n_hidden": cfg.n_hidden, "n_instances": cfg.n_instances,
                   "importance": importance.tolist(), "feature_probability": p.tolist()},
        "steps": steps,
        "threads": threads,
        "extrapolated_seconds_at": {"steps": FULL_STEPS, **{k: v * FULL_STEPS / steps for k, v in med.items()}},
        "seconds": times,
        "median_seconds": med,
        "steps_per_second": {k: steps / v for k, v in med.items()},
        "ratio": ratio,
        "best_of_rounds_ratio": min(times["reference"]) / min(times["ours"]),
        "final_losses_per_instance": {k: v.tolist() for k, v in loss.items()},
        "final_loss_mean": {k: v.mean().item() for k, v in loss.items()},
        "final_loss_max_relative_difference": max(rel),
        "pass": ratio["median"] >= TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--geometry-steps", type=int, default=200, help="steps of each side in the geometry row")
    parser.add_argument("--geometry-threads", type=int, default=2,
                        help="cores for each side of the geometry row (ours: that many worker threads)")
    parser.add_argument("--quick", action="store_true", help="300 steps (30 for geometry), 3 rounds, results to /tmp")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    steps = 300 if args.quick else args.steps
    out = args.out or (Path("/tmp/tms_speed.json") if args.quick else RESULTS / "tms_speed.json")
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    def steps_of(name: str) -> int:
        return (30 if args.quick else args.geometry_steps) if name == "geometry" else steps

    results = {name: run_setting(name, steps_of(name), args.rounds, args.batch,
                                 warmup_steps=min(steps_of(name), 10 if name == "geometry" else 100),
                                 threads=args.geometry_threads if name == "geometry" else args.threads)
               for name in args.settings}
    if out.exists() and not args.quick:   # keep the rows of the settings not run this time
        kept = json.loads(out.read_text()).get("results", {})
        for name, row in kept.items():
            row.setdefault("steps", json.loads(out.read_text()).get("setup", {}).get("steps"))
        results = {**{k: v for k, v in kept.items() if k not in results}, **results}
    info = {**machine(), "platform": platform.platform(), "threads": args.threads,
            "geometry_threads": args.geometry_threads}
    payload = {"benchmark": "tms_speed", "quick": args.quick,
               "setup": {"steps": steps, "batch": args.batch, "rounds": args.rounds, "lr": 1e-3, "weight_decay": 0.01,
                         "schedule": "constant", "model": "relu_output", "densities": "20 ** -linspace(0, 1, n); geometry: density_grid() x 3 seeds",
                         "final_loss": "per instance, mean over the last 100 steps, averaged over rounds (seeds)"},
               "machine": info, "target": TARGET, "results": results,
               "pass": all(r["pass"] for r in results.values()), "wall_seconds": time.perf_counter() - start}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")

    print(f"train_toy vs the colab-style reference loop: {steps} steps (geometry: its own, below), batch {args.batch}, AdamW lr 1e-3 wd 0.01, "
          f"{args.rounds} interleaved rounds, {args.threads} thread(s) on {info['cpu']}; torch {info['torch']}")
    print(f"  {'setting':<22} {'ours steps/s':>12} {'ref steps/s':>12}  {'ratio median (min, max)':<26} "
          f"{'final loss ours / ref':<24} result")
    for name, r in ((k, v) for k, v in results.items() if k in args.settings):
        c, sps, ratio, fl = r["config"], r["steps_per_second"], r["ratio"], r["final_loss_mean"]
        label = f"{name} n{c['n_features']} m{c['n_hidden']} x{c['n_instances']}"
        print(f"  {label:<22} {sps['ours']:12.0f} {sps['reference']:12.0f}  "
              f"{ratio['median']:5.2f}x ({ratio['min']:.2f}, {ratio['max']:.2f}){'':<9} "
              f"{fl['ours']:.4g} / {fl['reference']:.4g}{'':<7} "
              f"{'PASS' if r['pass'] else 'FAIL'} (target >= {TARGET:g}x)")
        print(f"  {'':<22} final loss per instance, max relative difference {r['final_loss_max_relative_difference']:.3f}")
        if "extrapolated_seconds_at" in r:
            e = r["extrapolated_seconds_at"]
            print(f"  {'':<22} measured on {r['steps']} steps; {e['steps']} steps extrapolated: ours "
                  f"{e['ours'] / 60:.1f} min, reference {e['reference'] / 60:.1f} min")
    print(f"{'PASS' if payload['pass'] else 'FAIL'}: target >= {TARGET:g}x; wrote {out}")


if __name__ == "__main__":
    main()
