"""The recipe that trains the bundled attention-only organisms (``mechscope train attn-only --layers N``).

Data: the offline corpus (``mechscope.data.corpus``: the standard library's source, its docstrings, man pages
where present), a byte-level BPE of ``d_vocab`` tokens trained on it (``mechscope.data.tokenizer``), packed into
rows of ``n_ctx`` tokens that start with BOS.  Natural-text induction heads need far more tokens than a CPU gives
in minutes, so the recipe makes induction the dominant signal early, as a **curriculum**:

* steps ``0 .. synthetic_steps``: only *repeat* rows — BOS, then a span of 10–40 random tokens repeated to fill
  the row — where everything after the first copy is predictable by induction alone;
* then natural text enters, its share rising linearly over ``ramp_steps`` to ``1 - final_synthetic``; a
  natural row also carries a repeated span (a stretch of the row copied further on) with probability
  ``repeat_prob``.

The optimiser is AdamW at 2e-3 without weight decay: at 1e-3 with weight decay 0.01 (the first bundled attempt)
layer 0's attention stayed diffuse — the best previous-token score reached 0.33 after 6000 steps, spread over
three heads — while without decay two sharp previous-token heads (0.96, 0.91) formed by step 3500.

With ``d_mlp`` set every block also has a GELU MLP: ``mlp_recipe()`` is the ``mlp-1l`` organism's recipe (one
block, d_mlp 512, natural text only, the bundled attention-only tokenizer reused through ``tokenizer_from``);
its card adds ``baseline``, the bundled attention-only model of the same depth on the same held-out rows.

Batch ``b`` of step ``s`` is a pure function of ``(seed, s)`` (``batch_at``), so a resumed run sees exactly the
batches an uninterrupted one would.  Every ``probe_every`` steps the head scores (previous-token, induction on
``[BOS] r r``) and the held-out natural-text loss are recorded; the card keeps that log with the data mix,
tokens seen and final scores.

Example (a few steps on a tiny corpus, to show the call)::

    >>> import tempfile
    >>> from mechscope.transformer.heads import probe_scores
    >>> from mechscope.zoo.organisms.attn_only_recipe import AttnOnlyRecipe, train_attn_only
    >>> with tempfile.TemporaryDirectory() as out:
    ...     card = train_attn_only(out, AttnOnlyRecipe(n_layers=1, steps=3, batch_size=2, d_vocab=300,
    ...                            corpus_bytes=200_000, probe_every=3, eval_rows=4), head_scores=probe_scores,
    ...                            progress=False)
    >>> sorted(card["final"])
    ['held_out_loss', 'induction', 'position_loss', 'previous_token']
    >>> [p["step"] for p in card["probes"]], len(card["final"]["position_loss"])   # 0 = the initialised model
    ([0, 3], 127)
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mechscope.artefacts import atomic_write_bytes, atomic_write_json
from mechscope.devices import eval_mode
from mechscope.errors import MechscopeError
from mechscope.training import TrainConfig, train
from mechscope.zoo import attn_only
from mechscope.zoo.weights import sha256_file

SPECIALS = 3   # <|bos|>, <|eos|>, <|pad|> take ids 0, 1, 2


@dataclass(frozen=True)
class AttnOnlyRecipe:
    """Everything that determines a trained attention-only organism."""

    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    n_ctx: int = 128
    d_vocab: int = 1024
    positional: str = "shortformer"
    seed: int = 0
    steps: int = 6000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 100
    threads: int = 1   # what the bundled cards record
    corpus_bytes: int = 20_000_000
    synthetic_steps: int = 1000
    ramp_steps: int = 2000
    final_synthetic: float = 0.2
    repeat_prob: float = 0.3
    probe_every: int = 500
    eval_rows: int = 256
    log_probes: int = 40   # probes at this many log-spaced steps too (10 .. steps), for the ICL phase change
    d_mlp: int | None = None   # an MLP (GELU) in every block: the ``mlp-1l`` organism (``mlp_recipe``)
    tokenizer_from: str | None = None   # a bundled ``*.tokenizer.json`` to reuse instead of training a BPE
    variant: str | None = None   # appended to the name: ``attn-only-2l-natural`` (``natural_recipe``)

    @property
    def name(self) -> str:
        """``attn-only-{N}l``, or ``mlp-{N}l`` when the blocks have MLPs, then ``-{variant}`` if any."""
        return f"{'attn-only' if self.d_mlp is None else 'mlp'}-{self.n_layers}l" + (f"-{self.variant}" if self.variant else "")

    def config(self) -> attn_only.AttnOnlyConfig:
        return attn_only.AttnOnlyConfig(n_layers=self.n_layers, d_model=self.d_model, n_heads=self.n_heads,
                                        d_head=self.d_head, n_ctx=self.n_ctx, d_vocab=self.d_vocab,
                                        positional=self.positional, d_mlp=self.d_mlp)

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, lr=self.lr, weight_decay=self.weight_decay, warmup=self.warmup,
                           seed=self.seed, checkpoint_every=250, log_every=50, grad_clip=1.0)

    def probe_steps(self) -> list[int]:
        """The steps after which the held-out metrics are recorded: 0 (the initialised model), every
        ``probe_every`` steps, ``log_probes`` log-spaced steps from 10 to ``steps`` and the last step."""
        steps = {0, self.steps, *range(self.probe_every, self.steps + 1, self.probe_every)}
        if self.log_probes > 0 and self.steps >= 10:
            steps |= {int(s) for s in np.unique(np.round(np.logspace(1, np.log10(self.steps), self.log_probes)))}
        return sorted(steps)

    def synthetic_share(self, step: int) -> float:
        """The share of repeat rows at ``step`` (1 during the synthetic phase, then falling linearly)."""
        if step < self.synthetic_steps:
            return 1.0
        ramp = min(1.0, (step - self.synthetic_steps) / self.ramp_steps) if self.ramp_steps > 0 else 1.0
        return 1.0 - ramp * (1.0 - self.final_synthetic)


def mlp_recipe(**changes: Any) -> AttnOnlyRecipe:
    """The ``mlp-1l`` organism's recipe: one block with attention and a GELU MLP (d_mlp 512), the attention-only
    organisms' corpus and their bundled tokenizer, trained on natural text only (no induction curriculum: its
    job is MLP features of text, not induction).  ``changes`` override fields (``steps``, ``seed``, ...)."""
    base = dict(n_layers=1, d_mlp=512, steps=4000, synthetic_steps=0, ramp_steps=0, final_synthetic=0.0, repeat_prob=0.0,
                tokenizer_from="attn_only_1l.tokenizer.json", log_probes=0)
    return AttnOnlyRecipe(**{**base, **changes})


NATURAL_STEPS = 20_000   # the natural-text runs' length (natural_recipe)


def natural_recipe(n_layers: int = 2, **changes: Any) -> AttnOnlyRecipe:
    """The ``attn-only-{N}l-natural`` runs of the in-context-learning claims: the attention-only recipe without its
    curriculum — natural text from the first step (no rows of repeated random spans), a natural row carrying a
    copied span with probability ``repeat_prob`` (0.3) as later in the bundled runs — and the bundled tokenizer.
    Held-out metrics are on natural text either way; here the model has seen natural text all along, as in the
    paper, so its ICL score is not confounded by a switch of training distribution.  ``NATURAL_STEPS`` (20000,
    82 M tokens) rather than the curriculum's 6000: the first natural runs, 6000 steps long, formed no induction head
    (best score 0.032 at the end, its rise begun near step 3000 as the cosine schedule was taking the learning rate
    down), so they could not test a claim about what happens when one forms."""
    base = dict(n_layers=n_layers, steps=NATURAL_STEPS, synthetic_steps=0, ramp_steps=0, final_synthetic=0.0,
                variant="natural",
                tokenizer_from=f"attn_only_{n_layers}l.tokenizer.json")
    return AttnOnlyRecipe(**{**base, **changes})


def repeat_row(g: torch.Generator, n_ctx: int, d_vocab: int, bos: int) -> torch.Tensor:
    """``[n_ctx]``: BOS, then a span of 10–40 random non-special tokens repeated to fill the row."""
    n = int(torch.randint(10, 41, (1,), generator=g))
    span = torch.randint(SPECIALS, d_vocab, (n,), generator=g)
    return torch.cat([torch.tensor([bos]), span.repeat(n_ctx // n + 1)[: n_ctx - 1]])


def with_repeat(row: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A copy of ``row [n_ctx]`` in which a stretch of 8–32 tokens reappears further on."""
    n_ctx = len(row)
    n = int(torch.randint(8, 33, (1,), generator=g))
    src = int(torch.randint(1, max(2, n_ctx // 2 - n), (1,), generator=g))
    dst = int(torch.randint(src + n, max(src + n + 1, n_ctx - n), (1,), generator=g))
    out = row.clone()
    out[dst: dst + n] = row[src: src + n]
    return out


def batch_at(step: int, recipe: AttnOnlyRecipe, rows: np.ndarray, bos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of ``step``: ``(tokens [B, n_ctx], tokens)`` (inputs and targets are the same rows)."""
    g = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
    share = recipe.synthetic_share(step)
    out = torch.empty(recipe.batch_size, recipe.n_ctx, dtype=torch.long)
    for i in range(recipe.batch_size):
        if float(torch.rand((), generator=g)) < share:
            out[i] = repeat_row(g, recipe.n_ctx, recipe.d_vocab, bos)
        else:
            row = torch.from_numpy(rows[int(torch.randint(len(rows), (1,), generator=g))].astype(np.int64))
            out[i] = with_repeat(row, g) if float(torch.rand((), generator=g)) < recipe.repeat_prob else row
    return out, out


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    return loss, {}


def prepare_data(out: Path, recipe: AttnOnlyRecipe, *, progress: bool = True) -> dict[str, Any]:
    """Build (or reuse, after checking) the corpus, the tokenizer and the token rows under ``out/data``."""
    from mechscope.data.corpus import build_corpus, load_corpus
    from mechscope.data.tokenizer import load_tokenizer, load_tokens, save_tokens, tokenize_corpus, train_bpe

    data = out / "data"
    corpus_dir = data / "corpus"
    if not (corpus_dir / "corpus.json").exists():
        if progress:
            print(f"building the corpus ({recipe.corpus_bytes / 1e6:.0f} MB) in {corpus_dir}", flush=True)
        build_corpus(corpus_dir, max_bytes=recipe.corpus_bytes, seed=recipe.seed)
    corpus = load_corpus(corpus_dir)
    tok_path = data / "tokenizer.json"
    if not tok_path.exists() and recipe.tokenizer_from is not None:
        from mechscope.zoo.registry import bundle_dir

        atomic_write_bytes(tok_path, (bundle_dir() / recipe.tokenizer_from).read_bytes())
    if not tok_path.exists():
        train_bpe([corpus.path("train")], vocab_size=recipe.d_vocab).save(tok_path)
    tokenizer = load_tokenizer(tok_path)
    if tokenizer.vocab_size != recipe.d_vocab:
        raise MechscopeError(f"{tok_path} has {tokenizer.vocab_size} tokens, the recipe {recipe.d_vocab}; "
                             "delete the data folder to rebuild it")
    arrays = {}
    for split in ("train", "held_out"):
        path = data / f"{split}_tokens.npy"
        if not path.exists():
            save_tokens(path, tokenize_corpus(tokenizer, corpus.text(split), seq_len=recipe.n_ctx),
                        vocab_size=recipe.d_vocab)
        arrays[split] = load_tokens(path)
    return {"corpus": corpus, "tokenizer": tokenizer, "tokenizer_path": tok_path, **arrays}


HeadScores = Callable[..., dict[str, torch.Tensor]]   # (model, *, bos, low) -> {kind: [n_layers, n_heads]}


@torch.no_grad()
def probe(model: attn_only.AttnOnlyTransformer, held_out: np.ndarray, bos: int, eval_rows: int,
          head_scores: HeadScores) -> dict[str, Any]:
    """Head scores (``head_scores(model, bos=bos, low=SPECIALS)``; the recipe's is
    ``mechscope.transformer.heads.probe_scores``: ``[BOS] r r``, r 50 random non-special tokens, 16 rows), the
    held-out natural loss and ``position_loss``: its mean at every predicted position ``1 .. n_ctx - 1`` (entry
    ``i`` is the loss of predicting token ``i + 1`` from tokens ``0 .. i``; what the in-context-learning score
    reads, ``mechscope.transformer.icl``)."""
    with eval_mode(model):
        scores = head_scores(model, bos=bos, low=SPECIALS)
        rows = torch.from_numpy(held_out[:eval_rows].astype(np.int64))
        per_token = [position_losses(model(rows[i: i + 32]), rows[i: i + 32]) for i in range(0, len(rows), 32)]
    position_loss = torch.cat(per_token).mean(0) if per_token else None
    return {"previous_token": [[round(float(v), 3) for v in layer] for layer in scores["previous_token"]],
            "induction": [[round(float(v), 3) for v in layer] for layer in scores["induction"]],
            "held_out_loss": round(float(position_loss.mean()), 4) if per_token else None,
            "position_loss": [round(float(v), 4) for v in position_loss] if per_token else None}


def position_losses(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``[B, n_ctx - 1]``: the next-token loss of every row at every predicted position."""
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")


@torch.no_grad()
def baseline(recipe: AttnOnlyRecipe, held_out: np.ndarray) -> dict[str, Any] | None:
    """For an organism with MLPs: the bundled attention-only model of the same depth on the same held-out rows
    (``None`` for attention-only recipes)."""
    if recipe.d_mlp is None:
        return None
    from mechscope.zoo.registry import load_language_model

    name = f"attn-only-{recipe.n_layers}l"
    model, _ = load_language_model(name)
    rows = torch.from_numpy(held_out[:recipe.eval_rows].astype(np.int64))
    losses = [next_token_loss(model(rows[i: i + 32]), rows[i: i + 32])[0] for i in range(0, len(rows), 32)]
    return {"model": name, "held_out_loss": round(float(torch.stack(losses).mean()), 4),
            "rows": f"held_out[:{recipe.eval_rows}], the rows of this card's held_out_loss"}


def train_attn_only(out_dir: str | os.PathLike, recipe: AttnOnlyRecipe = AttnOnlyRecipe(), *,
                    head_scores: HeadScores, progress: bool = True) -> dict[str, Any]:
    """Train an organism into ``out_dir``: ``checkpoint.pt`` while training (resumed from when present), then
    ``<name>.safetensors``, ``<name>.tokenizer.json`` and ``<name>.json`` (the card; ``name`` is
    ``recipe.name``: ``attn-only-{N}l`` or ``mlp-{N}l``), with the peak RSS of the process.
    ``head_scores`` probes the heads (pass ``mechscope.transformer.heads.probe_scores``: the analysis lives in
    the transformer area, above the zoo).  Returns the card."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(recipe.threads)
    start = time.perf_counter()
    data = prepare_data(out, recipe, progress=progress)
    bos = data["tokenizer"].bos_id
    model = attn_only.AttnOnlyTransformer(recipe.config(), seed=recipe.seed)
    probes: list[dict[str, Any]] = []

    probe_at = set(recipe.probe_steps())

    def on_step(step: int, m: torch.nn.Module) -> None:
        if step in probe_at and all(p["step"] != step for p in probes):
            probes.append({"step": step, "synthetic_share": round(recipe.synthetic_share(step - 1), 3),
                           **probe(m, data["held_out"], bos, recipe.eval_rows, head_scores)})
            if progress:
                p = probes[-1]
                print(f"step {step}: held-out loss {p['held_out_loss']}, best previous-token per layer "
                      f"{[max(x) for x in p['previous_token']]}, best induction per layer "
                      f"{[max(x) for x in p['induction']]}", flush=True)

    probes_path = out / "probes.json"
    if probes_path.exists():   # a resumed run keeps the probes of the steps it does not repeat
        probes.extend(json.loads(probes_path.read_text()))

    def on_step_saving(step: int, m: torch.nn.Module) -> None:
        before = len(probes)
        on_step(step, m)
        if len(probes) != before:
            atomic_write_bytes(probes_path, json.dumps(probes).encode())

    if not (out / "checkpoint.pt").exists():
        on_step_saving(0, model)   # the initialised model: where every curve starts

    log = train(model, lambda s: batch_at(s, recipe, data["train"], bos), next_token_loss, recipe.train_config(),
                checkpoint=out / "checkpoint.pt", progress=progress, on_step=on_step_saving)
    name = recipe.name
    weights = attn_only.save(model, out / f"{name}.safetensors")
    tok_file = out / f"{name}.tokenizer.json"
    atomic_write_bytes(tok_file, data["tokenizer_path"].read_bytes())
    final = probe(model, data["held_out"], bos, recipe.eval_rows, head_scores)
    card = {
        "name": name,
        "architecture": f"AttnOnlyTransformer (mechscope.zoo.attn_only): {recipe.n_layers} "
                        + ("attention-only layers" if recipe.d_mlp is None else
                           f"layers of attention + GELU MLP (d_mlp {recipe.d_mlp})") + f", d_model {recipe.d_model}, {recipe.n_heads} heads x {recipe.d_head}, n_ctx {recipe.n_ctx}, "
                        f"BPE {recipe.d_vocab}, {recipe.positional} positions, LayerNorm",
        "recipe": asdict(recipe),
        "data": {"corpus": data["corpus"].recipe,
                 "train_rows": int(len(data["train"])), "held_out_rows": int(len(data["held_out"])),
                 "mix": "curriculum: repeat rows only for the first synthetic_steps, then natural text rising "
                        "linearly over ramp_steps to 1 - final_synthetic of the rows; natural rows carry a "
                        "copied span with probability repeat_prob",
                 "tokens_seen": recipe.steps * recipe.batch_size * recipe.n_ctx,
                 "natural_rows_expected": round(sum(1 - recipe.synthetic_share(s) for s in range(recipe.steps))
                                                * recipe.batch_size)},
        "final": final,
        "baseline": baseline(recipe, data["held_out"]),
        "probes": sorted(probes, key=lambda p: p["step"]),
        "train_seconds_total": log[-1]["seconds"] if log else None,
        "train_seconds_this_session": round(time.perf_counter() - start, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": recipe.threads,
                    "torch": torch.__version__},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "sha256": sha256_file(weights),
        "tokenizer_sha256": sha256_file(tok_file),
        "log": log,
    }
    atomic_write_json(out / f"{name}.json", card)
    return card
