"""Speed of the multimodal analyses on ``shapes-clip`` (issue 14's targets), each against a plain per-image loop.

* ``zeroshot``: zero-shot classification of 1,000 held-out pictures (the ten shapes' picture prompts), images
  already rendered.  Ours: the prompts encoded once, the images in batches of 250 (what ``zeroshot_accuracy`` does);
  the peer: a plain loop, one image at a time (prompts encoded once too: batching is the only difference).  Target <= 5 s.
  Rendering the 1,000 images is timed on its own (``render_seconds``), and ``zeroshot_accuracy(n=1000)`` end to
  end for the picture style (rendering included).
* ``modality_table``: the modality table of every unit of the last conv layer (``mixed4b``, 128 units) over
  ~1,000 concept stimuli (``concept_stimuli(per_cell=19)``: 53 cells x 19 = 1,007 images, rendered beforehand and
  timed on their own).  Ours: ``layer_responses`` (batches of 250) + ``modality_table`` (one ``index_add``); the
  peer: one image at a time through ``capture``, then a Python loop over the cells.  Both tables are checked equal.
  Target <= 60 s.
* ``training_memory``: the organism's training peak resident memory, as its card records it (no peer).

Each comparison is timed interleaved (ours, peer, ours, ...) over ``--rounds`` rounds (default 2) after one warm-up call of ours; reported:
median seconds of each side, the paired ratio peer/ours (median, min, max: > 1 means ours is faster), CPU seconds
of the median round, and the load average when run (other jobs on a shared machine inflate wall time).

Run: ``.venv/bin/python benchmarks/multimodal_speed.py [--rounds 2] [--threads 2]``; ``--quick`` (1 round, 200
images, writes to /tmp).  Writes ``benchmarks/results/multimodal_speed.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import RESULTS, interleaved, machine, paired_ratio
import mechscope
from mechscope.capture import capture
from mechscope.data.concepts import class_prompts
from mechscope.data.multimodal import render
from mechscope.data.shapes import SHAPE_CLASSES
from mechscope.vision.multimodal import concept_stimuli, layer_responses, modality_table
from mechscope.vision.multimodal.stimuli import MODALITIES
from mechscope.zoo.organisms.shapes_clip_recipe import HELD_OUT_OFFSET, zeroshot_accuracy

ZEROSHOT_TARGET_S, TABLE_TARGET_S = 5.0, 60.0
LAYER = "mixed4b"


@torch.no_grad()
def zeroshot_ours(model, images: torch.Tensor, prompts: list[str], batch: int = 250) -> torch.Tensor:
    text = F.normalize(model.encode_text(prompts), dim=-1)
    out = [(F.normalize(model.encode_image(images[lo:lo + batch]), dim=-1) @ text.T).argmax(1)
           for lo in range(0, len(images), batch)]
    return torch.cat(out)


@torch.no_grad()
def zeroshot_loop(model, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    text = F.normalize(model.encode_text(prompts), dim=-1)
    out = []
    for image in images:
        out.append(int((F.normalize(model.encode_image(image[None]), dim=-1) @ text.T).argmax()))
    return torch.tensor(out)


def table_ours(model, s) -> torch.Tensor:
    acts = layer_responses(model, LAYER, s.images)
    return modality_table(acts, s.concept, s.modality, len(s.concepts), len(s.modalities))


@torch.no_grad()
def table_loop(model, s) -> torch.Tensor:
    acts = torch.stack([capture(model, image[None], LAYER)[LAYER][0].mean((1, 2)) for image in s.images]).double()
    mu, sigma = acts.mean(0), acts.std(0, unbiased=False)
    table = torch.full((len(s.modalities), len(s.concepts), acts.shape[1]), float("nan"), dtype=torch.float64)
    for m in range(len(s.modalities)):
        for c in range(len(s.concepts)):
            cell = (s.modality == m) & (s.concept == c)
            if cell.any():
                table[m, c] = (acts[cell].mean(0) - mu) / sigma
    return table.float()


def timed(ours, peer, rounds: int) -> tuple[dict, dict]:
    """Interleaved timing (no warm-up round: the peer loops take minutes); also each side's last output."""
    cpu: dict[str, list[float]] = {"ours": [], "peer": []}
    last: dict = {}

    def wrap(key, fn):
        def run():
            start = time.process_time()
            last[key] = fn()
            cpu[key].append(time.process_time() - start)
        return run

    ours()   # one warm-up of ours only (first-call allocations)
    times = interleaved({"ours": wrap("ours", ours), "peer": wrap("peer", peer)}, rounds=rounds, warmup=0)
    return last, {"ours_seconds": statistics.median(times["ours"]), "peer_seconds": statistics.median(times["peer"]),
            "ours_rounds": times["ours"], "peer_rounds": times["peer"],
            "ours_cpu_seconds": statistics.median(cpu["ours"]), "peer_cpu_seconds": statistics.median(cpu["peer"]),
            "speedup_peer_over_ours": paired_ratio(times["peer"], times["ours"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, per_cell, rounds = (200, 4, 1) if args.quick else (1000, 19, args.rounds)
    out = args.out or (Path("/tmp/multimodal_speed.json") if args.quick else RESULTS / "multimodal_speed.json")
    model = mechscope.load("shapes-clip", device="cpu").eval()
    prompts = class_prompts("picture")
    result: dict = {"machine": machine(), "threads": args.threads, "rounds": rounds,
                    "load_average_at_start": os.getloadavg()}

    start = time.perf_counter()
    idx = list(range(n))
    images = render([SHAPE_CLASSES[i % 10] for i in idx], None, "picture", seed=HELD_OUT_OFFSET, indices=idx).images
    render_s = time.perf_counter() - start
    last, z = timed(lambda: zeroshot_ours(model, images, prompts), lambda: zeroshot_loop(model, images, prompts),
                    rounds)
    labels = torch.tensor([i % 10 for i in idx])
    same = bool(torch.equal(last["ours"], last["peer"]))
    start = time.perf_counter()
    end_to_end = zeroshot_accuracy(model, model.tokenizer, n=n, styles=("picture",))["picture"]
    result["zeroshot"] = {"images": n, "render_seconds": render_s, **z, "same_predictions": same,
                          "accuracy": float((last["ours"] == labels).double().mean()),
                          "zeroshot_accuracy_end_to_end_seconds": time.perf_counter() - start,
                          "zeroshot_accuracy_end_to_end": end_to_end, "target_seconds": ZEROSHOT_TARGET_S,
                          "meets_target": z["ours_seconds"] <= ZEROSHOT_TARGET_S}

    start = time.perf_counter()
    s = concept_stimuli(per_cell=per_cell)
    stimuli_s = time.perf_counter() - start
    last, t = timed(lambda: table_ours(model, s), lambda: table_loop(model, s), rounds)
    a, b = last["ours"], last["peer"]
    agree = bool(torch.allclose(torch.nan_to_num(a, 123.0), torch.nan_to_num(b, 123.0), atol=1e-3))
    result["modality_table"] = {"layer": LAYER, "units": int(a.shape[2]), "images": len(s.images),
                                "modalities": list(MODALITIES), "concepts": len(s.concepts),
                                "render_seconds": stimuli_s, **t, "tables_equal_atol_1e-3": agree,
                                "target_seconds": TABLE_TARGET_S, "meets_target": t["ours_seconds"] <= TABLE_TARGET_S}

    card = json.loads((Path(mechscope.__file__).parent / "zoo" / "organisms" / "shapes_clip.json").read_text())
    result["training_memory"] = {"peak_memory_mb": card.get("peak_memory_mb"), "note": card.get("peak_memory_note"),
                                 "train_seconds": card.get("train_seconds_total"), "source": "the organism's card"}
    result["load_average_at_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    zs, mt = result["zeroshot"], result["modality_table"]
    print(f"zero-shot {n} images: ours {zs['ours_seconds']:.2f} s (peer loop {zs['peer_seconds']:.2f} s, "
          f"x{zs['speedup_peer_over_ours']['median']:.1f}); render {render_s:.2f} s; accuracy {zs['accuracy']:.3f}")
    print(f"modality table {mt['units']} units x {mt['images']} images: ours {mt['ours_seconds']:.2f} s (peer "
          f"{mt['peer_seconds']:.2f} s, x{mt['speedup_peer_over_ours']['median']:.1f}); render {stimuli_s:.2f} s; "
          f"equal {agree}")
    print(f"training peak memory {result['training_memory']['peak_memory_mb']} MB; wrote {out}")


if __name__ == "__main__":
    main()
