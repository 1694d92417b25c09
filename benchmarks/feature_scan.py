"""What the transformer feature scan (``feature_contexts``) costs over the model's plain forward, and that its memory
is flat in the corpus size.

The model is the bundled ``mlp-1l`` and its dictionary ``mlp-1l-sae`` (2048 TopK latents on
``blocks.0.mlp.hook_post``).  The text is held-out text the model never saw: the held-out split of its own corpus
(``prepare_data`` with the organism's recipe: 20 MB, seed 0), then, for more tokens, documents of the whole offline
corpus (``build_corpus(max_bytes=None)``) that are in neither split of the model's corpus, tokenized the recipe's way
(rows of ``n_ctx`` = 128 tokens, BOS first).  Both are built once under ``--data`` (default ``out/bench-data``).

1. Throughput, four arms over the same rows, interleaved by slice: the rows are cut into ``--rounds`` slices and
   each round runs every arm over the next slice (the two scans *resume* their state, so after the last round each
   has scanned every row once: the scans measured are the whole-corpus scans).  Arms:
   ``forward`` (``mechscope.capture`` stopped at the hook: no top-k, nothing kept), ``neuron scan``
   (``feature_contexts``: top-k contexts, firing counts and histograms of all 512 neurons), ``forward+encode``
   (the forward, then ``sae.encode``: the dense latents, nothing kept) and ``latent scan`` (``feature_contexts`` with
   ``sae=``: all 2048 latents).  Reported: tokens/s of each (whole run), the ratio of each scan's throughput to its
   plain computation (``neuron scan / forward``; ``latent scan / forward+encode``; and ``latent scan / forward``,
   which the encoder bounds: its matmul ``[tokens, 512] @ [512, 2048]`` is ~6x the model's own work per token), both
   whole-run and the median / min / max of the per-slice paired ratios; the same from this process's CPU time
   (``time.process_time``), which other jobs on a loaded machine disturb less than the wall clock.
2. Memory: peak RSS growth (``VmHWM`` reset after loading the rows) of each scan at two corpus sizes, each in a fresh
   child process, with the state's size.

Run: ``.venv/bin/python benchmarks/feature_scan.py [--tokens N] [--quick]`` (``make bench-features``).  Writes
``benchmarks/results/feature_scan.json`` (``--name`` to change), with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _common import machine, write
from mechscope.capture import capture
from mechscope.transformer.features import feature_contexts

HOOK = "blocks.0.mlp.hook_post"
ROOT = Path(__file__).resolve().parents[1]


def held_out_rows(data_dir: Path, tokens: int) -> tuple[torch.Tensor, dict]:
    """``[rows, 128]`` int64 rows of text ``mlp-1l`` never saw (at least ``tokens`` tokens when the corpus has them)."""
    from mechscope.data.corpus import DOC_SEPARATOR, build_corpus, load_corpus, split_documents
    from mechscope.data.tokenizer import load_tokens, save_tokens, tokenize_corpus
    from mechscope.zoo.organisms.attn_only_recipe import mlp_recipe, prepare_data

    recipe = mlp_recipe()
    data = prepare_data(data_dir, recipe, progress=True)
    held = torch.from_numpy(np.asarray(data["held_out"]).astype(np.int64))
    info = {"held_out_split_rows": len(held)}
    need = -(-tokens // recipe.n_ctx)
    if len(held) < need:
        unseen = data_dir / "data" / "unseen_tokens.npy"
        if not unseen.exists():
            full = data_dir / "data" / "full-corpus"
            if not (full / "corpus.json").exists():
                print(f"building the whole offline corpus in {full} (documents outside mlp-1l's)", flush=True)
                build_corpus(full, max_bytes=None, seed=recipe.seed, held_out=0)
            seen = set(data["corpus"].documents("train")) | set(data["corpus"].documents("held_out"))
            docs, size = [], 0
            for d in load_corpus(full).documents("train"):   # enough text for the rows (~3 bytes a token), no more
                if d not in seen and size < 6 * recipe.n_ctx * max(need, 8192):
                    docs.append(d)
                    size += len(d.encode("utf-8"))
            text = DOC_SEPARATOR.join(docs)
            assert split_documents(text) == docs
            save_tokens(unseen, tokenize_corpus(data["tokenizer"], text, seq_len=recipe.n_ctx,
                                                max_sequences=max(need, 8192)), vocab_size=recipe.d_vocab)
        more = torch.from_numpy(np.asarray(load_tokens(unseen)).astype(np.int64))
        held = torch.cat([held, more[: need - len(held)]])
        info["unseen_document_rows"] = len(held) - info["held_out_split_rows"]
    rows = held[:need]
    info.update(rows=len(rows), tokens=int(rows.numel()))
    return rows, info


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return -1


def _models():
    from mechscope.zoo.dictionaries import load_dictionary
    from mechscope.zoo.registry import load_language_model

    model = load_language_model("mlp-1l")[0].eval()
    sae = load_dictionary("mlp-1l-sae")[0].eval()
    return model, sae


def memory_child(args: argparse.Namespace) -> None:
    """Scan ``args.memory_child`` tokens with one kind; print the peak RSS growth and the state size as JSON."""
    torch.set_num_threads(args.threads)
    model, sae = _models()
    rows, _ = held_out_rows(Path(args.data), args.memory_child)
    extra = {"sae": sae} if args.kind == "latent" else {}
    feature_contexts(model, rows[: args.batch], HOOK, batch_size=args.batch, **extra)   # warm
    before = _vm("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")   # VmHWM := VmRSS
    state = feature_contexts(model, rows, HOOK, batch_size=args.batch, **extra)
    held = sum(getattr(state, n).numel() * getattr(state, n).element_size()
               for n in ("values", "index", "windows", "fired", "edges", "counts"))
    print(json.dumps({"kind": args.kind, "tokens": state.tokens, "state_mb": held / 2**20,
                      "rss_before_mb": before / 2**20, "peak_rss_growth_mb": (_vm("VmHWM") - before) / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="65,536 tokens, 4 rounds, memory at 16k / 64k tokens")
    parser.add_argument("--batch", type=int, default=32, help="rows per batch (x 128 tokens)")
    parser.add_argument("--rounds", type=int, default=8, help="slices = interleaved rounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=str(ROOT / "out" / "bench-data"))
    parser.add_argument("--memory-tokens", type=int, nargs=2, default=None)
    parser.add_argument("--name", default="feature_scan")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="neuron", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        return memory_child(args)
    if args.quick:
        args.tokens, args.rounds = 65_536, 4
    memory_tokens = args.memory_tokens or ([16_384, 65_536] if args.quick else [131_072, args.tokens])

    torch.set_num_threads(args.threads)
    model, sae = _models()
    rows, data_info = held_out_rows(Path(args.data), max(args.tokens, *memory_tokens))
    rows = rows[: -(-args.tokens // rows.shape[1])]
    slices = [s for s in torch.tensor_split(rows, args.rounds) if len(s)]
    bs = args.batch
    state: dict[str, object] = {"neuron scan": None, "latent scan": None}

    def forward(part):
        with torch.no_grad():
            for i in range(0, len(part), bs):
                capture(model, part[i: i + bs], [HOOK])

    def forward_encode(part):
        with torch.no_grad():
            for i in range(0, len(part), bs):
                x = capture(model, part[i: i + bs], [HOOK])[HOOK]
                sae.encode(x.reshape(-1, x.shape[-1]))

    def neuron_scan(part):
        state["neuron scan"] = feature_contexts(model, part, HOOK, batch_size=bs, state=state["neuron scan"])

    def latent_scan(part):
        state["latent scan"] = feature_contexts(model, part, HOOK, sae=sae, batch_size=bs,
                                                state=state["latent scan"])

    arms = {"forward": forward, "neuron scan": neuron_scan, "forward+encode": forward_encode,
            "latent scan": latent_scan}
    warm = rows[:bs]
    forward(warm), forward_encode(warm)
    feature_contexts(model, warm, HOOK, batch_size=bs), feature_contexts(model, warm, HOOK, sae=sae, batch_size=bs)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {a: [] for a in arms}
    cpu: dict[str, list[float]] = {a: [] for a in arms}   # this process's CPU time: what other jobs' load spares
    for r, part in enumerate(slices):
        order = list(arms) if r % 2 == 0 else list(arms)[::-1]   # alternate the order too
        for a in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            arms[a](part)
            times[a].append(time.perf_counter() - start)
            cpu[a].append(time.process_time() - start_cpu)
        print(f"  round {r + 1}/{len(slices)}: " + "  ".join(f"{a} {times[a][-1]:.2f}s" for a in arms), flush=True)
    load_after = os.getloadavg()
    n_tokens = int(rows.numel())
    assert state["neuron scan"].tokens == n_tokens and state["latent scan"].tokens == n_tokens

    def ratio(scan: str, base: str, t: dict[str, list[float]]) -> dict:
        per = [b / s for s, b in zip(t[scan], t[base], strict=True)]
        return {"whole_run": sum(t[base]) / sum(t[scan]), "median": statistics.median(per),
                "min": min(per), "max": max(per)}

    pairs = {"neuron_scan_over_forward": ("neuron scan", "forward"),
             "latent_scan_over_forward_encode": ("latent scan", "forward+encode"),
             "latent_scan_over_forward": ("latent scan", "forward")}
    ratios = {name: ratio(*pair, times) for name, pair in pairs.items()}
    cpu_ratios = {name: ratio(*pair, cpu) for name, pair in pairs.items()}
    memory = {}
    for kind in ("neuron", "latent"):
        for n in memory_tokens:
            cmd = [sys.executable, __file__, "--memory-child", str(n), "--kind", kind, "--batch", str(bs),
                   "--threads", str(args.threads), "--data", args.data]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            memory[f"{kind}@{n}"] = json.loads(out.strip().splitlines()[-1])
    result = {
        "benchmark": "feature_scan",
        "setup": {"model": "mlp-1l", "dictionary": "mlp-1l-sae (2048 TopK-16 latents)", "hook": HOOK,
                  "batch_rows": bs, "n_ctx": int(rows.shape[1]), "k": 20, "context": 8, "bins": 40,
                  "rounds": len(slices), "interleaving": "by slice, arm order alternating each round; scans resume",
                  "data": data_info},
        "machine": machine(),
        "load_average_before": load_before, "load_average_after": load_after,
        "seconds": {a: sum(t) for a, t in times.items()},
        "seconds_per_slice": times,
        "tokens_per_second": {a: n_tokens / sum(t) for a, t in times.items()},
        "ratios": ratios,
        "cpu_seconds": {a: sum(t) for a, t in cpu.items()},
        "tokens_per_cpu_second": {a: n_tokens / sum(t) for a, t in cpu.items()},
        "ratios_of_cpu_time": cpu_ratios,
        "target": 0.8,
        "memory": memory,
    }
    path = write(args.name, result)
    print(f"mlp-1l + mlp-1l-sae, {n_tokens:,} held-out tokens, batch {bs} x 128, {len(slices)} interleaved slices, "
          f"{args.threads} thread(s); load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
    for a in arms:
        print(f"  {a:15s} {result['tokens_per_second'][a]:10,.0f} tokens/s")
    for name, r in ratios.items():
        c = cpu_ratios[name]
        print(f"  {name:32s} {r['whole_run']:.3f} (slices: median {r['median']:.3f}, min {r['min']:.3f}, "
              f"max {r['max']:.3f}; of CPU time {c['whole_run']:.3f}, median {c['median']:.3f}; target >= 0.8)")
    for key, m in memory.items():
        print(f"  memory {key:16s} state {m['state_mb']:.2f} MB, peak RSS growth {m['peak_rss_growth_mb']:.1f} MB")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
