"""SAE training throughput: mechscope's ``train_sae`` vs SAELens's ``SAETrainer``, side by side in one process.

The same dictionary on the same activations: a TopK SAE (``d_in`` 512 -> 2048 latents, k = 16; both libraries have
the architecture) on ``mlp-1l``'s ``blocks.0.mlp.hook_post``, collected once into a float32 tensor file (the
``mlp-1l-sae`` recipe's buffer: its 1024 training rows chosen by seed 0, 131,072 tokens), both trained for the same
number of steps with the same batch size (1024), learning rate (1e-3, Adam), dtype (float32) and thread count, and
fed the same minibatches (rows drawn with replacement by the same seeded generator).

What is timed, per round, is one whole training run of each through its public API, from a fresh SAE:

* mechscope: ``train_sae(buffer, SAEConfig(kind="topk", ...), progress=False)`` (draw, forward, loss, backward,
  decoder-gradient projection, Adam, decoder renormalisation, the dead-latent counter; the recipe's resampling every
  500 steps does not fall inside a run of fewer steps);
* SAELens: ``SAETrainer(SAETrainerConfig(...), TopKTrainingSAE(TopKTrainingSAEConfig(...)), provider).fit()``
  with its defaults otherwise (``rescale_acts_by_decoder_norm``, the TopK aux-loss once latents are dead for
  ``dead_feature_window`` steps, gradient clipping, the LR scheduler, firing statistics; no wandb, no checkpoints).
  ``provider`` yields the same minibatches (the gather is timed on both sides).

Rounds alternate the order (A B, B A, ...); reported: tokens/s of each (median of rounds), the paired ratio
mechscope / SAELens throughput (median, min, max over rounds; target >= 1; also from this process's CPU time,
which other jobs on a loaded machine disturb less than the wall clock) and, as a check that both learned the same
kind of dictionary, each one's fraction of variance explained on 8192 buffer rows after the last round.

Needs SAELens: run through ``make bench-sae`` (its own venv, ``.venv-saelens``: torch 2.13.0, sae-lens 6.54.12 and
this package).  ``--quick`` for a smoke run.  Writes ``benchmarks/results/sae_vs_saelens.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")   # neither side draws a progress bar  # noqa: E402

import torch  # noqa: E402

from _common import machine, write  # noqa: E402

HOOK = "blocks.0.mlp.hook_post"
ROOT = Path(__file__).resolve().parents[1]


def activation_buffer(path: Path, data_dir: Path) -> torch.Tensor:
    """``[131072, 512]`` float32: the ``mlp-1l-sae`` recipe's buffer, collected once into ``path``."""
    from safetensors.torch import load_file, save_file

    if not path.exists():
        from mechscope.zoo.organisms.attn_only_recipe import mlp_recipe, prepare_data
        from mechscope.zoo.organisms.mlp_sae_recipe import MlpSAERecipe
        from mechscope.zoo.organisms.mlp_sae_recipe import activation_buffer as collect
        from mechscope.zoo.registry import load_language_model

        recipe = MlpSAERecipe()
        model = load_language_model(recipe.model)[0].eval()
        data = prepare_data(data_dir, mlp_recipe(corpus_bytes=recipe.corpus_bytes), progress=True)
        acts = collect(model, recipe.hook, data["train"], recipe.buffer_rows, recipe.seed).float().contiguous()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"acts": acts}, str(tmp))
        tmp.replace(path)
    return load_file(str(path))["acts"]


def batches(buffer: torch.Tensor, batch: int, seed: int):
    """The minibatches ``train_sae`` draws from a tensor: ``batch`` rows with replacement, seeded."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield buffer[torch.randint(buffer.shape[0], (batch,), generator=gen)]


def train_mechscope(buffer: torch.Tensor, args: argparse.Namespace):
    from mechscope.dictionary.sae import SAEConfig, train_sae

    cfg = SAEConfig(d_in=buffer.shape[1], n_latents=args.latents, kind="topk", k=args.k, lr=args.lr,
                    steps=args.steps, batch_size=args.batch, resample_every=500, dead_after=250, seed=args.seed)
    return train_sae(buffer, cfg, progress=False).sae


def train_saelens(buffer: torch.Tensor, args: argparse.Namespace):
    from sae_lens import LoggingConfig, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=buffer.shape[1], d_sae=args.latents, k=args.k, dtype="float32",
                                                device="cpu", normalize_activations="none"))
    cfg = SAETrainerConfig(total_training_samples=args.steps * args.batch, train_batch_size_samples=args.batch,
                           lr=args.lr, lr_end=args.lr, lr_scheduler_name="constant", device="cpu",
                           logger=LoggingConfig(log_to_wandb=False))   # as SAELens's own train_toy_sae sets it
    return SAETrainer(cfg, sae, batches(buffer, args.batch, args.seed)).fit()


@torch.no_grad()
def explained(reconstruct, x: torch.Tensor) -> float:
    """Fraction of variance of ``x`` explained by ``reconstruct(x)``."""
    err = (reconstruct(x) - x).pow(2).sum()
    return float(1 - err / (x - x.mean(0)).pow(2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps per training run")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--latents", type=int, default=2048)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="20 steps, 2 rounds")
    parser.add_argument("--data", default=str(ROOT / "out" / "bench-data"))
    parser.add_argument("--name", default="sae_vs_saelens")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 20, 2
    torch.set_num_threads(args.threads)
    buffer = activation_buffer(Path(args.data) / "mlp_1l_hook_post_buffer.safetensors", Path(args.data))
    arms = {"mechscope": train_mechscope, "saelens": train_saelens}
    for fn in arms.values():   # warm: imports, first allocations
        fn(buffer, argparse.Namespace(**{**vars(args), "steps": 3}))
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {a: [] for a in arms}
    cpu: dict[str, list[float]] = {a: [] for a in arms}   # this process's CPU time: what other jobs' load spares
    saes = {}
    for r in range(args.rounds):
        for a in (list(arms) if r % 2 == 0 else list(arms)[::-1]):
            start, start_cpu = time.perf_counter(), time.process_time()
            saes[a] = arms[a](buffer, args)
            times[a].append(time.perf_counter() - start)
            cpu[a].append(time.process_time() - start_cpu)
        print(f"  round {r + 1}/{args.rounds}: " + "  ".join(f"{a} {times[a][-1]:.2f}s" for a in arms), flush=True)
    load_after = os.getloadavg()
    tokens = args.steps * args.batch
    per_round = [s / m for m, s in zip(times["mechscope"], times["saelens"], strict=True)]
    per_round_cpu = [s / m for m, s in zip(cpu["mechscope"], cpu["saelens"], strict=True)]
    sample = buffer[torch.randperm(buffer.shape[0], generator=torch.Generator().manual_seed(1))[:8192]]
    fve = {"mechscope": explained(lambda x: saes["mechscope"](x)[0], sample),
           "saelens": explained(saes["saelens"], sample)}
    result = {
        "benchmark": "sae_vs_saelens",
        "setup": {"activations": f"mlp-1l {HOOK}, the mlp-1l-sae recipe's buffer", "buffer_tokens": buffer.shape[0],
                  "d_in": buffer.shape[1], "n_latents": args.latents, "architecture": f"TopK, k={args.k}",
                  "batch": args.batch, "steps_per_run": args.steps, "tokens_per_run": tokens, "lr": args.lr,
                  "dtype": "float32", "rounds": args.rounds,
                  "timed": "one whole training run per round through each public API (see the script's docstring)",
                  "sae_lens": version("sae-lens")},
        "machine": machine(),
        "load_average_before": load_before, "load_average_after": load_after,
        "seconds_per_run": times,
        "tokens_per_second": {a: tokens / statistics.median(t) for a, t in times.items()},
        "mechscope_over_saelens_throughput": {"median": statistics.median(per_round), "min": min(per_round),
                                              "max": max(per_round),
                                              "whole_run": sum(times["saelens"]) / sum(times["mechscope"])},
        "cpu_seconds_per_run": cpu,
        "mechscope_over_saelens_cpu_time": {"median": statistics.median(per_round_cpu), "min": min(per_round_cpu),
                                            "max": max(per_round_cpu),
                                            "whole_run": sum(cpu["saelens"]) / sum(cpu["mechscope"])},
        "target": 1.0,
        "fraction_of_variance_explained_after_one_run": fve,
    }
    path = write(args.name, result)
    ratio = result["mechscope_over_saelens_throughput"]
    print(f"TopK SAE 512 -> {args.latents} (k {args.k}), batch {args.batch}, {args.steps} steps x {args.rounds} "
          f"rounds, {args.threads} thread(s), sae-lens {version('sae-lens')}; load average {load_before[0]:.2f} -> "
          f"{load_after[0]:.2f}")
    for a in arms:
        print(f"  {a:10s} {result['tokens_per_second'][a]:10,.0f} tokens/s   FVE after one run {fve[a]:.3f}")
    print(f"  mechscope / SAELens throughput: median {ratio['median']:.3f} (min {ratio['min']:.3f}, max "
          f"{ratio['max']:.3f}; whole run {ratio['whole_run']:.3f}; target >= 1)")
    c = result["mechscope_over_saelens_cpu_time"]
    print(f"  the same from CPU time: median {c['median']:.3f} (min {c['min']:.3f}, max {c['max']:.3f})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
