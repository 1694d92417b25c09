"""The bundled sparse dictionaries of zoo models: one table (name, model, hook point, file, pinned sha256) and
``load_dictionary``.

Example::

    >>> from mechscope.zoo.dictionaries import dictionary_names, load_dictionary
    >>> dictionary_names()
    ['mlp-1l-sae']
    >>> sae, card = load_dictionary("mlp-1l-sae")
    >>> sae.config.kind, sae.config.n_latents, card["model"]
    ('topk', 2048, 'mlp-1l')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from mechscope.errors import WeightsError, unknown_name


@dataclass(frozen=True)
class DictionaryCard:
    """A bundled SAE: the zoo model and hook point it reads, its file stem in ``mechscope.zoo.organisms``, the
    sha256 pinned here (checked on every load) and the command that retrains it."""

    name: str
    model: str
    hook: str
    stem: str
    sha256: str
    retrain: str


_DICTIONARIES: tuple[DictionaryCard, ...] = (
    DictionaryCard("mlp-1l-sae", "mlp-1l", "blocks.0.mlp.hook_post", "mlp_1l_sae",
                   "9a8cb28fe860b9682a9cc8f81c91ff1a482cf3f7605e2db6a594a670283cdfb5",
                   "mechscope train mlp-1l-sae"),
)


def dictionary_names() -> list[str]:
    """Every bundled dictionary."""
    return [d.name for d in _DICTIONARIES]


def get_dictionary(name: str) -> DictionaryCard:
    """The table row of ``name``; an unknown name lists the valid ones."""
    for d in _DICTIONARIES:
        if d.name == name:
            return d
    raise unknown_name("dictionary", name, dictionary_names(), where="the zoo")


def load_dictionary(name: str) -> tuple[Any, dict[str, Any]]:
    """The bundled SAE ``name`` (fp32, eval mode, CPU; stored as fp16) and its card; ``WeightsError`` when the
    file does not match the sha256 pinned in the table."""
    from safetensors.torch import load_file

    from mechscope.dictionary.sae import SAEConfig, SparseAutoencoder
    from mechscope.zoo.registry import bundle_dir
    from mechscope.zoo.weights import sha256_file

    row = get_dictionary(name)
    path = bundle_dir() / f"{row.stem}.safetensors"
    found = sha256_file(path)
    if found != row.sha256:
        raise WeightsError(f"{path} fails its sha256 check (pinned {row.sha256}, found {found}); reinstall "
                           f"mechscope or retrain with `{row.retrain}`")
    card = json.loads(path.with_suffix(".json").read_text())
    r = card["recipe"]
    sae = SparseAutoencoder(SAEConfig(d_in=card["d_in"], n_latents=r["n_latents"], kind="topk", k=r["k"],
                                      seed=r["seed"]))
    sae.load_state_dict({k: v.to(torch.float32) for k, v in load_file(str(path)).items()})
    return sae.eval(), card
