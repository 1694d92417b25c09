"""The dictionary of ``mlp-1l``: a TopK sparse autoencoder on ``blocks.0.mlp.hook_post`` (``mechscope train
mlp-1l-sae``), bundled as ``mlp_1l_sae.safetensors`` (fp16) + ``mlp_1l_sae.json`` (its card).

Data: a buffer of ``buffer_rows`` rows of the *training* split (seeded choice; the held-out split is disjoint by
document), every position of every row a ``[d_mlp]`` activation.  The card's scores are measured on held-out rows
``[0, eval_rows)`` with the weights as bundled (fp16, read back as fp32): L0, fraction of variance explained,
the loss clean / with the MLP's activations replaced by the reconstruction / with the MLP zero-ablated and the
loss recovered, dead and dense latents, the spread of those numbers over 64-row chunks (the tolerance a test on
other held-out rows allows), and the feature-density histogram (``mlp_1l_sae_density.png``).  The last
``sample_rows`` held-out rows (never in the card's scores) are bundled as ``mlp_1l.held_out_sample.safetensors``:
fresh text on which the tests reproduce the cards offline.

Why TopK and not the paper's L1: L0 is fixed by construction (no coefficient to sweep in a 15-minute budget), and
the kept latents are not shrunk towards zero, so the reconstruction and the loss recovered are not biased down by
the penalty; dead latents are resampled as in the L1 recipe.

Example (the bundled dictionary)::

    >>> from mechscope.zoo.dictionaries import load_dictionary
    >>> sae, card = load_dictionary("mlp-1l-sae")
    >>> sae.config.d_in, card["hook"]
    (512, 'blocks.0.mlp.hook_post')
"""

from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mechscope.artefacts import atomic_write_bytes, atomic_write_json
from mechscope.dictionary.sae import SAEConfig, SparseAutoencoder, train_sae
from mechscope.dictionary.scores import density_histogram, score_dictionary

NAME = "mlp_1l_sae"
SAMPLE = "mlp_1l.held_out_sample.safetensors"


@dataclass(frozen=True)
class MlpSAERecipe:
    """Everything that determines the bundled dictionary of ``mlp-1l``."""

    model: str = "mlp-1l"
    hook: str = "blocks.0.mlp.hook_post"
    n_latents: int = 2048
    k: int = 16
    steps: int = 2500
    batch_size: int = 1024
    lr: float = 1e-3
    resample_every: int = 500
    dead_after: int = 250
    buffer_rows: int = 1024
    eval_rows: int = 1024
    sample_rows: int = 256
    chunk_rows: int = 64
    corpus_bytes: int = 20_000_000   # the organism's corpus (``mlp_recipe``), built when ``data_dir`` has none
    seed: int = 0
    threads: int = 1

    def config(self, d_in: int) -> SAEConfig:
        return SAEConfig(d_in=d_in, n_latents=self.n_latents, kind="topk", k=self.k, steps=self.steps,
                         batch_size=self.batch_size, lr=self.lr, resample_every=self.resample_every,
                         dead_after=self.dead_after, seed=self.seed)


@torch.no_grad()
def activation_buffer(model: torch.nn.Module, hook: str, rows: np.ndarray, n_rows: int, seed: int,
                      batch: int = 32) -> torch.Tensor:
    """``[n_rows * pos, width]``: ``hook``'s values on ``n_rows`` rows of ``rows`` chosen by ``seed``."""
    from mechscope.capture import capture

    pick = np.sort(np.random.default_rng(seed).choice(len(rows), size=min(n_rows, len(rows)), replace=False))
    tokens = torch.from_numpy(rows[pick].astype(np.int64))
    out = [capture(model, tokens[i: i + batch], [hook])[hook] for i in range(0, len(tokens), batch)]
    return torch.cat(out).reshape(-1, out[0].shape[-1])


def fp16_roundtrip(sae: SparseAutoencoder) -> tuple[dict[str, torch.Tensor], SparseAutoencoder]:
    """The fp16 tensors that are bundled, and an fp32 SAE holding exactly those values (what loads)."""
    half = {k: v.detach().to(torch.float16).contiguous().cpu() for k, v in sae.state_dict().items()}
    back = SparseAutoencoder(sae.config)
    back.load_state_dict({k: v.float() for k, v in half.items()})
    return half, back.eval()


def chunk_spread(model: torch.nn.Module, sae: SparseAutoencoder, hook: str, rows: torch.Tensor,
                 chunk: int) -> dict[str, float]:
    """Standard deviation over ``chunk``-row pieces of ``rows`` of the card's numbers (``None`` for fewer than
    two pieces)."""
    keys = ("l0", "fraction_of_variance_explained", "loss_clean", "loss_recovered")
    per = [score_dictionary(model, sae, hook, rows[i: i + chunk]).summary(6) for i in range(0, len(rows), chunk)]
    if len(per) < 2:
        return {k: None for k in keys}
    return {k: round(float(np.std([p[k] for p in per], ddof=1)), 4) for k in keys}


def train_mlp_sae(out_dir: str | os.PathLike, recipe: MlpSAERecipe = MlpSAERecipe(), *,
                  model_file: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Train the dictionary into ``out_dir`` (``mlp_1l_sae.safetensors``, ``.json``, the density PNG and the
    held-out sample); returns the card.  ``model_file``: an ``mlp-1l.safetensors`` written by ``mechscope train
    mlp-1l`` (default: the bundled model).  ``data_dir``: a folder holding (or to hold) the corpus and tokens
    (``<dir>/data``, as ``mechscope train mlp-1l`` leaves it; default ``out_dir``)."""
    from safetensors.torch import save

    from mechscope.zoo import attn_only
    from mechscope.zoo.organisms.attn_only_recipe import mlp_recipe, prepare_data
    from mechscope.zoo.registry import load_language_model
    from mechscope.zoo.weights import sha256_file

    torch.set_num_threads(recipe.threads)
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = attn_only.load(model_file) if model_file is not None else load_language_model(recipe.model)[0]
    model.eval()
    data = prepare_data(Path(data_dir) if data_dir is not None else out,
                        mlp_recipe(corpus_bytes=recipe.corpus_bytes), progress=progress)
    buffer = activation_buffer(model, recipe.hook, data["train"], recipe.buffer_rows, recipe.seed)
    trained = train_sae(buffer, recipe.config(int(buffer.shape[1])), progress=progress)
    train_seconds = round(time.perf_counter() - start, 1)
    half, sae = fp16_roundtrip(trained.sae)
    path = out / f"{NAME}.safetensors"
    atomic_write_bytes(path, save(half, metadata={"mechscope": "sae", "dtype": "float16"}))
    held = torch.from_numpy(data["held_out"].astype(np.int64))
    eval_rows, sample = held[: recipe.eval_rows], held[-recipe.sample_rows:]
    if len(held) < recipe.eval_rows + recipe.sample_rows:
        eval_rows = held[: len(held) - recipe.sample_rows]
    atomic_write_bytes(out / SAMPLE, save({"tokens": sample.to(torch.int32).contiguous()},
                                          metadata={"what": f"the last {len(sample)} rows of mlp-1l's held-out split"}))
    scores = score_dictionary(model, sae, recipe.hook, eval_rows)
    density_histogram(scores.frequencies, out / f"{NAME}_density.png",
                      title=f"mlp-1l SAE on {recipe.hook} ({scores.tokens:,} held-out tokens)")
    card = {"name": NAME, "model": recipe.model, "hook": recipe.hook, "recipe": asdict(recipe),
            "d_in": int(buffer.shape[1]), "buffer_tokens": int(buffer.shape[0]), "storage": "float16",
            "held_out": {**scores.summary(), "chunk_std": chunk_spread(model, sae, recipe.hook, eval_rows,
                                                                      recipe.chunk_rows),
                         "chunk_rows": recipe.chunk_rows,
                         "log10_frequency_quantiles": [round(float(q), 3) for q in np.quantile(
                             np.log10([f for f in scores.frequencies if f > 0] or [1.0]), [0.05, 0.25, 0.5, 0.75,
                                                                                          0.95])]},
            "train_log": trained.log[-1], "dead_resampled": trained.dead_resampled,
            "train_seconds": train_seconds, "seconds_total": round(time.perf_counter() - start, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "machine": {"cpu": platform.processor() or platform.machine(), "threads": recipe.threads,
                        "torch": torch.__version__},
            "sha256": sha256_file(path), "sample_sha256": sha256_file(out / SAMPLE),
            "retrain": "mechscope train mlp-1l-sae"}
    atomic_write_json(out / f"{NAME}.json", card)
    return card


def held_out_sample() -> torch.Tensor:
    """The bundled held-out sample of ``mlp-1l``'s text: token rows ``[256, 128]`` int64 (fresh text: in neither
    card's scores); ``WeightsError`` when the file does not match the ``sample_sha256`` of the dictionary's card.

    >>> held_out_sample().shape
    torch.Size([256, 128])
    """
    import json

    from safetensors.torch import load_file

    from mechscope.errors import WeightsError
    from mechscope.zoo.registry import bundle_dir
    from mechscope.zoo.weights import sha256_file

    path = bundle_dir() / SAMPLE
    want = json.loads((bundle_dir() / f"{NAME}.json").read_text())["sample_sha256"]
    found = sha256_file(path)
    if found != want:
        raise WeightsError(f"{path} fails its sha256 check (card {want}, found {found}); reinstall mechscope or "
                           "retrain with `mechscope train mlp-1l-sae`")
    return load_file(str(path))["tokens"].long()
