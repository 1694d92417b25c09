"""How good a sparse dictionary is on the model it was trained on: one streaming pass over token rows.

For an SAE reading a hook point of a language model (e.g. ``blocks.0.mlp.hook_post`` of ``mlp-1l``),
:func:`score_dictionary` runs the model three ways on the same rows and reports what *Towards Monosemanticity*
reports:

* **L0**: active latents per token (mean);
* **fraction of variance explained**: ``1 - Σ‖x - x̂‖² / Σ‖x - mean(x)‖²`` over all tokens;
* **loss recovered**: the next-token loss *clean*, with the hook's value replaced by the SAE's reconstruction
  (*spliced*), and with the module that owns the hook zero-ablated (*zero*, e.g. the whole MLP's output set to 0);
  ``(zero - spliced) / (zero - clean)`` (1: the reconstruction loses nothing, 0: no better than no MLP);
* **firing frequency** of every latent: **dead** latents never fire on the rows, **dense** ones fire on more
  than ``dense_above`` (10 %) of tokens; :func:`density_histogram` plots ``log10`` frequencies as in the paper.

Memory does not grow with the rows: sums are accumulated per batch.

Example (a random model and SAE; shapes and ranges only)::

    >>> import torch
    >>> from mechscope.dictionary.sae import SAEConfig, SparseAutoencoder
    >>> from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
    >>> model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=8,
    ...                                            d_vocab=20, d_mlp=32), seed=0)
    >>> sae = SparseAutoencoder(SAEConfig(d_in=32, n_latents=64, kind="topk", k=4))
    >>> s = score_dictionary(model, sae, "blocks.0.mlp.hook_post", torch.randint(0, 20, (4, 8)))
    >>> s.l0, s.tokens, len(s.frequencies)
    (4.0, 32, 64)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mechscope.dictionary.sae import SparseAutoencoder
from mechscope.errors import MechscopeError, unknown_name

__all__ = ["DictionaryScores", "score_dictionary", "hook_points", "density_histogram", "next_token_loss_sum"]


@dataclass(frozen=True)
class DictionaryScores:
    """What :func:`score_dictionary` measured on ``tokens`` positions (``rows`` rows)."""

    hook: str
    rows: int
    tokens: int
    l0: float
    fraction_of_variance_explained: float
    loss_clean: float
    loss_spliced: float
    loss_zero_ablated: float
    dense_above: float
    frequencies: list[float] = field(repr=False)

    @property
    def loss_recovered(self) -> float:
        """``(zero - spliced) / (zero - clean)``: the share of the hooked module's loss contribution kept."""
        gap = self.loss_zero_ablated - self.loss_clean
        return (self.loss_zero_ablated - self.loss_spliced) / gap if gap != 0 else math.nan

    @property
    def dead(self) -> int:
        """Latents that never fired on these tokens."""
        return sum(f == 0 for f in self.frequencies)

    @property
    def dense(self) -> int:
        """Latents that fired on more than ``dense_above`` of the tokens."""
        return sum(f > self.dense_above for f in self.frequencies)

    def summary(self, digits: int = 4) -> dict[str, Any]:
        """The numbers a card records (rounded), without the per-latent frequencies."""
        r = lambda v: round(float(v), digits)   # noqa: E731
        return {"hook": self.hook, "rows": self.rows, "tokens": self.tokens, "l0": r(self.l0),
                "fraction_of_variance_explained": r(self.fraction_of_variance_explained),
                "loss_clean": r(self.loss_clean), "loss_spliced": r(self.loss_spliced),
                "loss_zero_ablated": r(self.loss_zero_ablated), "loss_recovered": r(self.loss_recovered),
                "dead": self.dead, "dense": self.dense, "dense_above": self.dense_above}


def hook_points(model: nn.Module) -> list[str]:
    """The names a dictionary can read: the model's ``hook_names()`` when it has them, else its module paths."""
    names = getattr(model, "hook_names", None)
    return list(names()) if callable(names) else [n for n, _ in model.named_modules() if n]


def _module(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules or not name:
        raise unknown_name("hook point", name, hook_points(model), where=type(model).__name__)
    return modules[name]


def next_token_loss_sum(logits: Tensor, tokens: Tensor) -> Tensor:
    """Σ of next-token cross-entropies of ``logits [B, pos, vocab]`` for ``tokens [B, pos]`` (``B * (pos-1)`` terms)."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), tokens[:, 1:].reshape(-1),
                           reduction="sum")


@torch.no_grad()
def score_dictionary(model: nn.Module, sae: SparseAutoencoder, hook: str, tokens: Tensor, *,
                     ablate: str | None = None, batch_size: int = 32, dense_above: float = 0.1) -> DictionaryScores:
    """Score ``sae`` on ``model``'s ``hook`` over ``tokens [rows, pos]`` (see the module docstring).

    ``ablate``: the module zero-ablated for the baseline (default: the hook's parent, ``blocks.0.mlp`` for
    ``blocks.0.mlp.hook_post``).  An unknown hook or module names the valid hook points; an SAE whose ``d_in``
    is not the hook's width is refused before anything is measured.
    """
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise MechscopeError(f"score_dictionary needs token rows [rows, pos >= 2], got {tuple(tokens.shape)}")
    point = _module(model, hook)
    parent = _module(model, ablate if ablate is not None else hook.rpartition(".")[0])
    sae = sae.eval()
    captured: dict[str, Tensor] = {}
    mode = {"value": "clean"}

    def on_point(_m: nn.Module, _i: Any, out: Tensor) -> Tensor | None:
        if out.shape[-1] != sae.config.d_in:
            raise MechscopeError(f"the SAE reads d_in={sae.config.d_in}, but {hook} has width {out.shape[-1]} "
                                 f"(shape {tuple(out.shape)}): it was trained on another hook or model")
        if mode["value"] == "clean":
            captured["x"] = out
            return None
        if mode["value"] == "spliced":
            return sae(out)[0]
        return None

    def on_parent(_m: nn.Module, _i: Any, out: Tensor) -> Tensor | None:
        return torch.zeros_like(out) if mode["value"] == "zero" else None

    n, sq_err, sum_x, sum_x2, active = 0, 0.0, None, 0.0, 0.0
    fired = torch.zeros(sae.config.n_latents, dtype=torch.long)
    loss = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    handles = [point.register_forward_hook(on_point), parent.register_forward_hook(on_parent)]
    try:
        for start in range(0, len(tokens), batch_size):
            rows = tokens[start: start + batch_size]
            for mode["value"] in ("clean", "spliced", "zero"):
                loss[mode["value"]] += float(next_token_loss_sum(model(rows), rows))
            x = captured["x"].reshape(-1, sae.config.d_in).float()
            recon, latents = sae(x)
            on = latents > 0
            n += x.shape[0]
            sq_err += float((recon - x).pow(2).sum())
            sum_x = x.sum(0) if sum_x is None else sum_x + x.sum(0)
            sum_x2 += float(x.pow(2).sum())
            active += float(on.sum())
            fired += on.sum(0).cpu()
    finally:
        for h in handles:
            h.remove()
    total_var = sum_x2 - float(sum_x.pow(2).sum()) / n
    predictions = len(tokens) * (tokens.shape[1] - 1)
    return DictionaryScores(
        hook=hook, rows=len(tokens), tokens=n, l0=active / n,
        fraction_of_variance_explained=1 - sq_err / total_var if total_var > 0 else math.nan,
        loss_clean=loss["clean"] / predictions, loss_spliced=loss["spliced"] / predictions,
        loss_zero_ablated=loss["zero"] / predictions, dense_above=dense_above,
        frequencies=(fired.double() / n).tolist())


def density_histogram(frequencies: list[float] | Tensor, path: str | os.PathLike | None = None, *,
                      title: str = "feature density", bins: int = 50) -> Any:
    """The paper's feature-density plot: a histogram of ``log10`` firing frequency over latents (dead latents,
    which have no logarithm, counted in the title).  Saved as a PNG at ``path`` when given; returns the figure."""
    from mechscope.plots import new_figure, save_figure

    f = torch.as_tensor(frequencies, dtype=torch.float64)
    alive = f[f > 0]
    fig, ax = new_figure(figsize=(6, 3.5))
    if len(alive):
        ax.hist(alive.log10().numpy(), bins=bins, color="#4063a8")
    ax.set_xlabel("log10 firing frequency (fraction of tokens)")
    ax.set_ylabel("latents")
    ax.set_title(f"{title}: {len(f)} latents, {int((f == 0).sum())} dead")
    if path is not None:
        save_figure(fig, Path(path), dpi=100)
    return fig
