"""mechscope's attention-only transformer and circuit analyses vs TransformerLens, side by side.

Both libraries hold the same random weights of TL's ``attn-only-2l`` shape (d_model 512, 8 heads x 64, d_vocab
48262, 2 layers, LayerNorm with random w/b, shortformer positions, n_ctx 1024); their logits are checked to agree
(atol 1e-3) before anything is timed.  Measured in one process, interleaved rounds, paired ratios reported as
mechscope speed / TL speed (> 1: mechscope faster):

1. forward with cache (``run_with_cache`` under ``no_grad``), tokens/s, batch 4 x 256;
2. one AdamW training step (forward, next-token cross-entropy, backward, step), tokens/s, steady state;
3. all Q/K/V composition scores: ``composition_scores(model, k)`` vs ``model.all_composition_scores(K)``;
4. copying scores of every head's full OV circuit: ``copying_scores(model)`` vs TL's
   ``(model.W_E @ model.OV @ model.W_U).eigenvalues`` then ``Re(sum) / sum(abs)``.

The analyses read the unfolded weights on both sides (neither folds LayerNorm), and are checked to agree once.
Peak RSS growth of one call of each analysis is measured per side in a fresh child process (``VmHWM``).
Targets: forward and training ratio >= 1.0, analyses >= 5x, our analyses' peak memory < 1 GiB.

Run: ``.venv/bin/python benchmarks/transformer_vs_tl.py [--rounds 5] [--threads 2] [--n-ctx 1024] [--batch 4]
[--seq 256]``; ``--quick`` is a seconds-long smoke test on a tiny config (writes to /tmp).
Writes ``benchmarks/results/transformer_vs_tl.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import RESULTS, interleaved, machine, paired_ratio
from mechscope.transformer.circuits import composition_scores, copying_scores
from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer, to_transformer_lens, transformer_lens_config

FULL = dict(n_layers=2, d_model=512, n_heads=8, d_head=64, d_vocab=48262, normalization="LN", positional="shortformer")
QUICK = dict(FULL, d_model=64, n_heads=4, d_head=16, d_vocab=500, n_ctx=128)
TINY = dict(FULL, d_model=8, n_heads=2, d_head=4, d_vocab=20, n_ctx=8)  # the memory children's warm-up
ANALYSES = ("composition", "copying")


def config(args: argparse.Namespace) -> AttnOnlyConfig:
    return AttnOnlyConfig(**QUICK) if args.quick else AttnOnlyConfig(**FULL, n_ctx=args.n_ctx)


def build(cfg: AttnOnlyConfig, seed: int = 0, with_tl: bool = True):
    """Ours (seeded, LayerNorm w/b randomised) and a TL ``HookedTransformer`` holding the same weights (``None``
    unless ``with_tl``: importing TL takes seconds, which the memory children for our side skip)."""
    ours = AttnOnlyTransformer(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if ".ln" in "." + name:  # ln1.w / ln1.b / ln_final.w / ln_final.b
                p.copy_((1.0 if name.endswith(".w") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
    if not with_tl:
        return ours, None
    import transformer_lens as tl

    warnings.filterwarnings("ignore", message="HookedTransformer is deprecated")
    theirs = tl.HookedTransformer(tl.HookedTransformerConfig(**transformer_lens_config(cfg), device="cpu",
                                                             init_weights=False))
    theirs.load_state_dict(to_transformer_lens(ours), strict=True)
    return ours, theirs


# ---- the analyses, as each library's user would write them -------------------------------------------------------


def ours_composition(model):
    return torch.stack([composition_scores(model, k) for k in "qkv"])


def tl_composition(model):
    return torch.stack([model.all_composition_scores(k) for k in "QKV"])


def ours_copying(model):
    return copying_scores(model)


def tl_copying(model):
    lam = (model.W_E @ model.OV @ model.W_U).eigenvalues  # [L, H, d_head], TL's FactoredMatrix route
    return lam.sum(-1).real / lam.abs().sum(-1)


ANALYSIS_FNS = {("composition", "ours"): ours_composition, ("composition", "tl"): tl_composition,
                ("copying", "ours"): ours_copying, ("copying", "tl"): tl_copying}


def _vm(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    """Peak RSS growth (MiB) of one analysis on one side; prints one JSON line.  Not ``ru_maxrss``: a child
    started by (v)fork + exec inherits the parent's peak there.  ``VmHWM`` is reset to the current RSS
    (``clear_refs``) just before the call; the warm-up runs on a tiny model (code pages, LAPACK set-up) so that
    it leaves no large freed blocks in malloc's heap to be reused."""
    torch.set_num_threads(args.threads)
    analysis, side = args.child
    fn = ANALYSIS_FNS[(analysis, side)]
    pick = 0 if side == "ours" else 1
    with torch.no_grad():
        fn(build(AttnOnlyConfig(**TINY), with_tl=side == "tl")[pick])
        model = build(config(args), with_tl=side == "tl")[pick]
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        before = _vm("VmRSS")
        fn(model)
        peak = _vm("VmHWM")
    print(json.dumps({"analysis": analysis, "side": side, "peak_rss_growth_mib": peak - before,
                      "rss_before_mib": before, "peak_rss_mib": peak}))


def memory(args: argparse.Namespace) -> dict:
    out = {}
    for analysis in ANALYSES:
        for side in ("ours", "tl"):
            cmd = [sys.executable, __file__, "--child", analysis, side, "--threads", str(args.threads),
                   "--n-ctx", str(args.n_ctx)] + (["--quick"] if args.quick else [])
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**20)}  # blocks >= 1 MiB mmapped, freed at once
            res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
            out.setdefault(analysis, {})[side] = json.loads(res.strip().splitlines()[-1])
    return out


# ---- main ---------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny config, batch 2 x 32, 2 rounds: a smoke test")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; 2 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 2; 1 with --quick)")
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=None, help="default 4 (2 with --quick)")
    parser.add_argument("--seq", type=int, default=None, help="default 256 (32 with --quick)")
    parser.add_argument("--out", default=None, help="result JSON (default benchmarks/results/transformer_vs_tl.json; "
                                                    "/tmp/transformer_vs_tl_quick.json with --quick)")
    parser.add_argument("--child", nargs=2, metavar=("ANALYSIS", "SIDE"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    q = args.quick
    args.threads = args.threads or (1 if q else 2)
    if args.child:
        return child(args)
    rounds, batch, seq = args.rounds or (2 if q else 5), args.batch or (2 if q else 4), args.seq or (32 if q else 256)
    out = Path(args.out or ("/tmp/transformer_vs_tl_quick.json" if q else RESULTS / "transformer_vs_tl.json"))
    torch.set_num_threads(args.threads)
    cfg = config(args)
    ours, theirs = build(cfg)
    tokens = torch.randint(0, cfg.d_vocab, (batch, seq), generator=torch.Generator().manual_seed(2))
    n_tok = batch * seq

    # ---- agreement, once ----
    with torch.no_grad():
        logit_diff = (ours(tokens) - theirs(tokens)).abs().max().item()
        comp_diff = (ours_composition(ours) - tl_composition(theirs)).abs().max().item()
        copy_diff = (ours_copying(ours) - tl_copying(theirs)).abs().max().item()
    checks = {"logits_max_abs_diff": logit_diff, "composition_max_abs_diff": comp_diff,
              "copying_max_abs_diff": copy_diff}
    assert logit_diff < 1e-3, f"logits disagree: {logit_diff}"
    assert comp_diff < 1e-4, f"composition scores disagree: {comp_diff}"
    assert copy_diff < 1e-3, f"copying scores disagree: {copy_diff}"

    # ---- 1. forward with cache ----
    def fwd(model):
        def run():
            with torch.no_grad():
                model.run_with_cache(tokens)
        return run

    # ---- 2. training step ----
    def train_step(model):
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            logits = model(tokens)
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, cfg.d_vocab), tokens[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    def analysis(fn, model):
        def run():
            with torch.no_grad():
                fn(model)
        return run

    cases = {
        "forward_cache": (fwd(ours), fwd(theirs), n_tok, 2),
        "train_step": (train_step(ours), train_step(theirs), n_tok, 1),
        "composition": (analysis(ours_composition, ours), analysis(tl_composition, theirs), None, 1),
        "copying": (analysis(ours_copying, ours), analysis(tl_copying, theirs), None, 1),
    }
    results = {}
    for name, (a, b, units, warmup) in cases.items():
        times = interleaved({"ours": a, "tl": b}, rounds, warmup=warmup)
        ratio = paired_ratio(times["tl"], times["ours"])  # TL time / our time = our speed / TL's
        med = {k: statistics.median(v) for k, v in times.items()}
        results[name] = {"median_seconds": med, "seconds": times, "ratio": ratio,
                         "best_of_rounds_ratio": min(times["tl"]) / min(times["ours"])}
        if units:
            results[name]["tokens_per_second"] = {k: units / v for k, v in med.items()}
    del ours, theirs
    gc.collect()
    mem = memory(args)

    targets = {"forward_cache": 1.0, "train_step": 1.0, "composition": 5.0, "copying": 5.0}
    table = [{"measure": f"{k} speed ratio", "value": results[k]["ratio"]["median"], "target": f">= {t}",
              "pass": results[k]["ratio"]["median"] >= t} for k, t in targets.items()]
    table += [{"measure": f"{a} peak memory (ours, MiB)", "value": mem[a]["ours"]["peak_rss_growth_mib"],
               "target": "< 1024", "pass": mem[a]["ours"]["peak_rss_growth_mib"] < 1024} for a in ANALYSES]
    info = {**machine(), "platform": platform.platform(), "transformer_lens": _version("transformer-lens"),
            "threads": args.threads}
    payload = {"benchmark": "transformer_vs_tl", "quick": q,
               "setup": {"config": {k: v for k, v in vars(cfg).items() if k != "extra"}, "batch": batch, "seq": seq,
                         "rounds": rounds, "ln_weights": "random (1 + 0.1 N, 0.1 N)", "seed": 0,
                         "memory": "VmHWM - VmRSS around one call, fresh child, MALLOC_MMAP_THRESHOLD_=1 MiB"},
               "machine": info, "checks": checks, "results": results, "memory": mem, "targets": table}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")

    print(f"attn-only {cfg.n_layers}L d_model {cfg.d_model} {cfg.n_heads}x{cfg.d_head} d_vocab {cfg.d_vocab} "
          f"n_ctx {cfg.n_ctx}, batch {batch} x {seq}, {rounds} interleaved rounds, {args.threads} thread(s) on "
          f"{info['cpu']}; torch {info['torch']}, transformer-lens {info['transformer_lens']}")
    print(f"  agreement: logits {logit_diff:.2e}, composition {comp_diff:.2e}, copying {copy_diff:.2e}")
    for name, r in results.items():
        m, ratio = r["median_seconds"], r["ratio"]
        speed = (f"{r['tokens_per_second']['ours']:9.0f} vs {r['tokens_per_second']['tl']:9.0f} tok/s"
                 if "tokens_per_second" in r else f"{m['ours'] * 1e3:9.1f} vs {m['tl'] * 1e3:9.1f} ms  ")
        print(f"  {name:<14} ours vs TL {speed}   ratio {ratio['median']:.3f} "
              f"(min {ratio['min']:.3f}, max {ratio['max']:.3f}; best-of-rounds {r['best_of_rounds_ratio']:.3f})")
    for a in ANALYSES:
        print(f"  {a:<14} peak RSS growth: ours {mem[a]['ours']['peak_rss_growth_mib']:8.1f} MiB, "
              f"TL {mem[a]['tl']['peak_rss_growth_mib']:8.1f} MiB")
    print(f"  {'measure':<38} {'value':>10}  {'target':<8} result")
    for row in table:
        print(f"  {row['measure']:<38} {row['value']:10.3f}  {row['target']:<8} {'PASS' if row['pass'] else 'FAIL'}")
    print(f"wrote {out}")


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    main()
