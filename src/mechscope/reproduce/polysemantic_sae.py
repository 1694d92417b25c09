"""The sparse autoencoder on the shapes organism's mixed3b that the polysemanticity claim reads: its recipe
(``SAERecipe``), ``train_mixed3b_sae`` (what ``mechscope train shapes-sae`` runs: writes
``shapes_mixed3b_sae.safetensors`` + ``.json`` card) and ``load_mixed3b_sae`` (the bundled file, sha256 checked
against its card).  Bundled because training it inside the claim's check would take minutes on a laptop CPU.

The SAE is trained on the training world (seed 0), never on the held-out images the claim measures, and never
sees a label: every position of ``images`` images of ``mixed3b`` is a row.

Example::

    >>> sae, card = load_mixed3b_sae()
    >>> sae.config.n_latents, sae.config.kind, card["recipe"]["world_seed"]
    (832, 'topk', 0)
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from mechscope.artefacts import atomic_write_bytes, atomic_write_json
from mechscope.dictionary.sae import SAEConfig, SparseAutoencoder, capture_activations, train_sae
from mechscope.errors import WeightsError

NAME = "shapes_mixed3b_sae"


@dataclass(frozen=True)
class SAERecipe:
    """How the bundled SAE is trained: ``images`` items of the shapes world ``world_seed``, all positions of
    ``layer`` of the ``model`` as rows; a TopK dictionary of ``n_latents`` with ``k`` active."""

    model: str = "shapes"
    layer: str = "mixed3b"
    world_seed: int = 0
    images: int = 512
    n_latents: int = 832
    k: int = 8
    steps: int = 1000
    batch_size: int = 1024
    lr: float = 2e-3
    resample_every: int = 250
    dead_after: int = 125
    seed: int = 0
    threads: int = 1   # torch CPU threads; the bundled card records 1 (its top-level "threads")

    def config(self, d_in: int) -> SAEConfig:
        return SAEConfig(d_in=d_in, n_latents=self.n_latents, kind="topk", k=self.k, steps=self.steps,
                         batch_size=self.batch_size, lr=self.lr, resample_every=self.resample_every,
                         dead_after=self.dead_after, seed=self.seed)


def train_mixed3b_sae(out: str | os.PathLike, recipe: SAERecipe = SAERecipe(), progress: bool = True) -> dict:
    """Train the SAE of ``recipe``; write ``out/shapes_mixed3b_sae.safetensors`` and its card ``.json``
    (recipe, seconds, machine, final metrics, fraction of variance unexplained, sha256); return the card."""
    from safetensors.torch import save

    from mechscope.data.shapes import ShapesDataset
    from mechscope.zoo.registry import load
    from mechscope.zoo.weights import sha256_file

    torch.set_num_threads(recipe.threads)
    start = time.perf_counter()
    net = load(recipe.model, device="cpu").eval()
    rows = capture_activations(net, recipe.layer, ShapesDataset(recipe.images, seed=recipe.world_seed).batches(64),
                               max_rows=10 ** 9)
    config = recipe.config(int(rows.shape[1]))
    trained = train_sae(rows, config, progress=progress)
    out = Path(out)
    path = out / f"{NAME}.safetensors"
    atomic_write_bytes(path, save({k: v.detach().contiguous() for k, v in trained.sae.state_dict().items()}))
    final = trained.log[-1]
    card = {"name": NAME, "recipe": asdict(recipe), "d_in": int(rows.shape[1]), "rows": int(rows.shape[0]),
            "seconds": round(time.perf_counter() - start, 1), "threads": recipe.threads,
            "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
            "final": final, "fraction_of_variance_unexplained": round(final["mse"] / float(rows.var(0).sum()), 4),
            "dead_resampled": trained.dead_resampled, "sha256": sha256_file(path),
            "retrain": "mechscope train shapes-sae"}
    atomic_write_json(out / f"{NAME}.json", card)
    return card


def load_mixed3b_sae(folder: str | os.PathLike | None = None) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """The bundled SAE (eval mode, CPU) and its card, from ``folder`` (default: the package's bundle, or a
    ``train_mixed3b_sae`` output folder); ``WeightsError`` when the file does not match its card's sha256."""
    import json

    from safetensors.torch import load_file

    from mechscope.zoo.weights import sha256_file

    where = Path(str(resources.files("mechscope.zoo.organisms"))) if folder is None else Path(folder)
    path, card_path = where / f"{NAME}.safetensors", where / f"{NAME}.json"
    card = json.loads(card_path.read_text())
    if sha256_file(path) != card["sha256"]:
        raise WeightsError(f"{path} does not match the sha256 of its card; retrain with `{card['retrain']}`")
    sae = SparseAutoencoder(SAERecipe(**card["recipe"]).config(card["d_in"]))
    sae.load_state_dict(load_file(str(path)))
    return sae.eval(), card


__all__ = ["SAERecipe", "train_mixed3b_sae", "load_mixed3b_sae", "NAME"]
