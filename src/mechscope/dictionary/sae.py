"""Sparse autoencoders (sparse dictionary learning) and how well they recover known features.

(Over 400 lines because the SAE, its training loop with dead-latent resampling, its recovery score and the
two ways to feed it activations — a toy model's, a layer's — are read together when a dictionary misbehaves.)

A model in superposition stores more features than it has dimensions.  A sparse autoencoder (SAE) learns an
overcomplete dictionary ``W_dec [n_latents, d_in]`` (unit-norm rows) and a sparse code ``latents`` such that
``x ≈ latents @ W_dec + b_dec``.  When the true features are known (a planted dictionary, or the columns of a
toy model's ``W``), :func:`recovery_score` says how well the SAE found them: for each true feature the best
cosine similarity over decoder rows, averaged over features (the "mean max cosine similarity", MMCS).

Two kinds, following the usual recipes:

* ``"relu"``: ``latents = ReLU((x - b_dec) @ W_enc + b_enc)``, loss = MSE + ``l1`` · Σ|latents| (the decoder rows
  have unit norm, so this is the L1 weighted by decoder norms).  Dead latents are resampled towards inputs the
  SAE reconstructs badly.
* ``"topk"``: the same pre-activations, ReLU, then only the ``k`` largest per input are kept; no L1 penalty.

Example (exact, and fast)::

    >>> import torch
    >>> from mechscope.dictionary.sae import SAEConfig, SparseAutoencoder, recovery_score
    >>> sae = SparseAutoencoder(SAEConfig(d_in=4, n_latents=16, kind="topk", k=2))
    >>> recon, latents = sae(torch.randn(10, 4))
    >>> recon.shape, latents.shape, int((latents != 0).sum(-1).max())
    (torch.Size([10, 4]), torch.Size([10, 16]), 2)
    >>> eye = torch.eye(3)
    >>> recovery_score(eye, eye).mean_max_cosine, recovery_score(-eye, eye).mean_max_cosine
    (1.0, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mechscope.capture import capture
from mechscope.devices import model_device
from mechscope.errors import MechscopeError

__all__ = [
    "SAEConfig",
    "SparseAutoencoder",
    "TrainedSAE",
    "train_sae",
    "RecoveryScore",
    "recovery_score",
    "capture_activations",
]

KINDS = ("relu", "topk")


@dataclass(frozen=True)
class SAEConfig:
    """Hyper-parameters of one sparse autoencoder and its training run.

    Attributes:
        d_in: width of the activations the SAE reads.
        n_latents: dictionary size (``> d_in`` for an overcomplete dictionary).
        kind: ``"relu"`` (ReLU latents, L1 penalty) or ``"topk"`` (keep the ``k`` largest latents, no penalty).
        l1: L1 coefficient (``relu`` only).
        k: active latents per input (``topk`` only).
        lr: Adam learning rate.
        steps: optimiser steps.
        batch_size: rows per minibatch (when training from a tensor).
        resample_every: resample dead latents every this many steps (``0``: never).
        dead_after: a latent is dead if it has not fired (been ``> 0``) in this many steps.
        seed: seeds the initialisation and the minibatch sampling.
    """

    d_in: int
    n_latents: int
    kind: str = "relu"
    l1: float = 1e-3
    k: int = 4
    lr: float = 1e-3
    steps: int = 5000
    batch_size: int = 1024
    resample_every: int = 1000
    dead_after: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, minimum: int = 1) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise MechscopeError(f"SAEConfig.{name} must be an integer >= {minimum}, got {value!r}")

        positive_int("d_in", self.d_in)
        positive_int("n_latents", self.n_latents)
        positive_int("k", self.k)
        positive_int("steps", self.steps, 0)
        positive_int("batch_size", self.batch_size)
        positive_int("resample_every", self.resample_every, 0)
        positive_int("dead_after", self.dead_after)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise MechscopeError(f"SAEConfig.seed must be an integer, got {self.seed!r}")
        if self.kind not in KINDS:
            raise MechscopeError(f"SAEConfig.kind must be one of {', '.join(map(repr, KINDS))}, got {self.kind!r}")
        if self.kind == "topk" and self.k > self.n_latents:
            raise MechscopeError(f"SAEConfig.k ({self.k}) must be <= n_latents ({self.n_latents}) for a topk SAE")
        if not (isinstance(self.l1, (int, float)) and math.isfinite(self.l1) and self.l1 >= 0):
            raise MechscopeError(f"SAEConfig.l1 must be a finite number >= 0, got {self.l1!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise MechscopeError(f"SAEConfig.lr must be a finite number > 0, got {self.lr!r}")


class SparseAutoencoder(nn.Module):
    """One sparse autoencoder: ``latents = act((x - b_dec) @ W_enc + b_enc)``, ``x̂ = latents @ W_dec + b_dec``.

    Parameters: ``W_enc [d_in, n_latents]``, ``b_enc [n_latents]``, ``W_dec [n_latents, d_in]`` (rows unit norm;
    :func:`train_sae` keeps them so), ``b_dec [d_in]``.  Initialisation (seeded by ``config.seed``): random
    unit decoder rows, ``W_enc = W_dec.T``, zero biases.
    """

    def __init__(self, config: SAEConfig) -> None:
        super().__init__()
        self.config = config
        gen = torch.Generator().manual_seed(config.seed)
        w = F.normalize(torch.randn(config.n_latents, config.d_in, generator=gen), dim=-1)
        self.W_dec = nn.Parameter(w)
        self.W_enc = nn.Parameter(w.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(config.n_latents))
        self.b_dec = nn.Parameter(torch.zeros(config.d_in))

    def pre_activations(self, x: Tensor) -> Tensor:
        """``(x - b_dec) @ W_enc + b_enc``: ``[..., d_in] -> [..., n_latents]``."""
        return ((x - self.b_dec) @ self.W_enc).add_(self.b_enc)   # in place on the fresh product: one buffer less

    def encode(self, x: Tensor) -> Tensor:
        """Sparse code of ``x [..., d_in]``: ``[..., n_latents]`` (ReLU; for ``topk`` only the k largest kept)."""
        acts = torch.relu(self.pre_activations(x))
        if self.config.kind == "topk":
            values, idx = acts.topk(self.config.k, dim=-1)
            acts = torch.zeros_like(acts).scatter(-1, idx, values)
        return acts

    def decode(self, latents: Tensor) -> Tensor:
        """Reconstruction ``latents @ W_dec + b_dec``: ``[..., n_latents] -> [..., d_in]``."""
        return latents @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(reconstruction [..., d_in], latents [..., n_latents])``."""
        latents = self.encode(x)
        return self.decode(latents), latents

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm (rows of zero norm are left at zero)."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove from ``W_dec.grad`` the component parallel to each (unit) decoder row."""
        if self.W_dec.grad is not None:
            g = self.W_dec.grad
            g.sub_((g * self.W_dec).sum(-1, keepdim=True) * self.W_dec)


@dataclass(frozen=True)
class TrainedSAE:
    """The result of :func:`train_sae`.

    Attributes:
        sae: the trained autoencoder (in eval mode, on the device of the training data).
        config: the configuration it was trained with.
        log: one dict per logged step: ``step``, ``mse`` (squared error summed over ``d_in``, mean over the
            batch), ``l1`` (Σ|latents| per input, mean over the batch, before the coefficient), ``l0`` (mean
            active latents per input), ``dead`` (latents that have not fired in ``dead_after`` steps).
        dead_resampled: how many latents were re-initialised in all (a latent resampled twice counts twice).
    """

    sae: SparseAutoencoder
    config: SAEConfig
    log: list[dict[str, float]] = field(default_factory=list)
    dead_resampled: int = 0


Source = Tensor | Callable[[int, torch.Generator], Tensor]


def _sampler(activations: Source, config: SAEConfig) -> tuple[Callable[[int, int], Tensor], Tensor]:
    """``(draw(step, rows), first_batch)``: minibatches from a tensor (seeded), or from a callable's stream."""
    gen = torch.Generator().manual_seed(config.seed)
    if isinstance(activations, Tensor):
        data = activations.detach()
        if data.dim() != 2 or data.shape[1] != config.d_in or data.shape[0] == 0:
            raise MechscopeError(
                f"train_sae needs activations of shape [N, d_in={config.d_in}] with N >= 1, got {tuple(data.shape)}"
            )
        data = data.float() if not data.is_floating_point() else data

        def draw(step: int, rows: int) -> Tensor:
            idx = torch.randint(data.shape[0], (rows,), generator=gen)
            return data[idx.to(data.device)]

        return draw, data.mean(0)

    if not callable(activations):
        raise MechscopeError(f"train_sae needs a [N, d_in] tensor or a callable (step, generator) -> batch, "
                             f"got {type(activations).__name__}")

    def draw(step: int, rows: int) -> Tensor:  # the callable decides its own batch size
        batch = activations(step, gen)
        if not isinstance(batch, Tensor) or batch.dim() != 2 or batch.shape[1] != config.d_in:
            shape = tuple(batch.shape) if isinstance(batch, Tensor) else type(batch).__name__
            raise MechscopeError(f"the activation callable must return [batch, d_in={config.d_in}], got {shape}")
        return batch.detach().float()

    return draw, torch.empty(0)


@torch.no_grad()
def _resample(
    sae: SparseAutoencoder, opt: torch.optim.Adam, dead: Tensor, x: Tensor, gen: torch.Generator
) -> None:
    """Re-initialise the ``dead`` latents (bool mask) towards badly reconstructed rows of ``x``; reset their Adam state."""
    n_dead = int(dead.sum())
    recon, _ = sae(x)
    loss = (recon - x).pow(2).sum(-1)
    p = loss.pow(2)
    if not torch.isfinite(p).all() or float(p.sum()) <= 0:
        p = torch.ones_like(p)
    replace = n_dead > int((p > 0).sum())
    picks = torch.multinomial(p.cpu(), n_dead, replacement=replace, generator=gen).to(x.device)
    dirs = x[picks] - sae.b_dec
    norms = dirs.norm(dim=-1, keepdim=True)
    fallback = F.normalize(torch.randn(dirs.shape, generator=gen), dim=-1).to(dirs)
    dirs = torch.where(norms > 1e-8, dirs / norms.clamp_min(1e-12), fallback)
    alive = ~dead
    enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else torch.tensor(1.0)
    sae.W_dec[dead] = dirs
    sae.W_enc[:, dead] = (dirs * 0.2 * enc_norm).T
    sae.b_enc[dead] = 0.0
    for param, index in ((sae.W_dec, (dead,)), (sae.W_enc, (slice(None), dead)), (sae.b_enc, (dead,))):
        state = opt.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][index] = 0.0


def train_sae(
    activations: Source,
    config: SAEConfig,
    *,
    progress: bool = True,
    sae: SparseAutoencoder | None = None,
    log_every: int | None = None,
) -> TrainedSAE:
    """Train a sparse autoencoder on activations.

    Args:
        activations: a ``[N, d_in]`` tensor (minibatches of ``config.batch_size`` rows are sampled from it with
            replacement, seeded by ``config.seed``), or a callable ``f(step, generator) -> [batch, d_in]`` that
            streams fresh activations (e.g. a toy model's hidden layer on freshly sampled sparse inputs).
        config: hyper-parameters.
        progress: show a ``tqdm`` progress bar.
        sae: continue training this autoencoder (left as it is at the start) instead of a fresh one whose
            ``b_dec`` starts at the data mean (the tensor's mean, or the first streamed batch's mean).
        log_every: log every this many steps (default ``steps // 100``, at least 1); the last step is always logged.

    Loss per step: ``mean_batch(Σ_d (x̂ - x)²)`` + ``l1 · mean_batch(Σ_latents |latents|)`` (``relu`` kind only).
    Adam; before each step the decoder gradient's component along each decoder row is removed, after it the rows
    are re-normalised.  Every ``resample_every`` steps (not at the last step), latents silent for ``dead_after`` steps
    are resampled: decoder row <- a badly reconstructed input (drawn with probability ∝ loss²) minus ``b_dec``,
    normalised; encoder column <- that direction × 0.2 × the alive columns' mean norm; bias 0; Adam moments zeroed.
    """
    from tqdm.auto import tqdm

    if not isinstance(config, SAEConfig):
        raise MechscopeError(f"train_sae needs an SAEConfig, got {type(config).__name__}")
    draw, mean = _sampler(activations, config)
    first = draw(0, config.batch_size)
    device = first.device
    if sae is None:
        sae = SparseAutoencoder(config).to(device)
        with torch.no_grad():
            sae.b_dec.copy_(mean.to(device) if mean.numel() else first.mean(0))
    elif sae.config.d_in != config.d_in or sae.config.n_latents != config.n_latents:
        raise MechscopeError(f"the SAE given is {sae.config.d_in} -> {sae.config.n_latents}, "
                             f"the config says {config.d_in} -> {config.n_latents}")
    sae.train()
    sae.normalize_decoder()
    opt = torch.optim.Adam(sae.parameters(), lr=config.lr)
    resample_gen = torch.Generator().manual_seed(config.seed + 1)
    every = log_every if log_every is not None else max(1, config.steps // 100)
    silent = torch.zeros(config.n_latents, dtype=torch.long, device=device)  # steps since each latent fired
    log: list[dict[str, float]] = []
    resampled = 0
    use_l1 = config.kind == "relu" and config.l1 > 0
    bar = tqdm(range(config.steps), desc=f"SAE {config.kind} {config.d_in}->{config.n_latents}",
               disable=not progress)
    for step in bar:
        x = first if step == 0 else draw(step, config.batch_size)
        recon, latents = sae(x)
        mse = (recon - x).pow(2).sum(-1).mean()
        l1 = latents.abs().sum(-1).mean() if use_l1 else None   # without the penalty, only a logged step needs it
        loss = mse + config.l1 * l1 if use_l1 else mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sae.project_decoder_grad()
        opt.step()
        sae.normalize_decoder()
        with torch.no_grad():
            fired = (latents > 0).any(0)
            silent += 1
            silent[fired] = 0
            done = step + 1
            if config.resample_every and done % config.resample_every == 0 and done < config.steps:
                dead = silent >= config.dead_after
                if bool(dead.any()):
                    _resample(sae, opt, dead, draw(step, 4 * config.batch_size), resample_gen)
                    resampled += int(dead.sum())
                    silent[dead] = 0
            if done % every == 0 or done == config.steps:
                entry = {
                    "step": done,
                    "mse": float(mse),
                    "l1": float(l1 if l1 is not None else latents.abs().sum(-1).mean()),
                    "l0": float((latents > 0).float().sum(-1).mean()),
                    "dead": int((silent >= config.dead_after).sum()),
                }
                log.append(entry)
                bar.set_postfix(mse=f"{entry['mse']:.3g}", l0=f"{entry['l0']:.2f}", dead=entry["dead"])
    sae.eval()
    return TrainedSAE(sae=sae, config=config, log=log, dead_resampled=resampled)


@dataclass(frozen=True)
class RecoveryScore:
    """How well a dictionary recovers known features (see :func:`recovery_score`).

    Attributes:
        mean_max_cosine: for each kept true feature, the largest cosine similarity with any decoder row, averaged
            over the kept features.  The headline number: 1.0 means every feature has an exact match.
        per_feature: ``[n_features]`` best cosine per feature (``nan`` for excluded features).
        matched_latent: ``[n_features]`` the decoder row achieving it (``-1`` for excluded features).
        mmcs_latents: the reverse, for reference: each decoder row's best cosine over kept features, averaged
            over rows (low when many latents are dead or split).
        excluded: how many features were left out for having norm below ``min_norm`` (e.g. features a toy model
            did not represent).
    """

    mean_max_cosine: float
    per_feature: Tensor
    matched_latent: Tensor
    mmcs_latents: float
    excluded: int = 0

    def __str__(self) -> str:
        note = f"; {self.excluded} feature(s) below min_norm excluded" if self.excluded else ""
        return (f"mean max cosine {self.mean_max_cosine:.3f} over {self.per_feature.numel() - self.excluded} "
                f"features (latents' mean max cosine {self.mmcs_latents:.3f}){note}")


def recovery_score(decoder: Tensor, features: Tensor, *, min_norm: float = 1e-6) -> RecoveryScore:
    """Score how well the rows of ``decoder`` recover the rows of ``features``.

    Args:
        decoder: ``[n_latents, d]`` learned directions (e.g. ``sae.W_dec``).
        features: ``[n_features, d]`` true feature directions (e.g. a toy model's ``W.T``, or a planted dictionary).
        min_norm: features with norm below this are excluded (a toy model may drop features entirely; their zero
            direction cannot be recovered) and counted in ``excluded``.  Decoder rows of zero norm match nothing
            (cosine 0).

    Signed cosine, not ``|cosine|``: a decoder row ``-f`` does not recover ``f`` (its latent, being
    nonnegative, can only write ``-f``).  Permutations do not matter: each feature takes its best row.
    """
    decoder = decoder.detach().float().cpu()
    features = features.detach().float().cpu()
    if decoder.dim() != 2 or features.dim() != 2 or decoder.shape[1] != features.shape[1]:
        raise MechscopeError(f"recovery_score needs decoder [n_latents, d] and features [n_features, d] with the "
                             f"same d, got {tuple(decoder.shape)} and {tuple(features.shape)}")
    if decoder.shape[0] == 0 or features.shape[0] == 0:
        raise MechscopeError("recovery_score needs at least one decoder row and one feature")
    keep = features.norm(dim=-1) >= min_norm
    excluded = int((~keep).sum())
    if not bool(keep.any()):
        raise MechscopeError(f"all {features.shape[0]} features have norm below min_norm={min_norm}; nothing to score")
    cos = F.normalize(features, dim=-1) @ F.normalize(decoder, dim=-1).T  # [n_features, n_latents]
    best, arg = cos.max(dim=1)
    per_feature = torch.where(keep, best, torch.full_like(best, float("nan")))
    matched = torch.where(keep, arg, torch.full_like(arg, -1))
    mmcs_latents = cos[keep].max(dim=0).values.mean()
    return RecoveryScore(
        mean_max_cosine=float(best[keep].mean()),
        per_feature=per_feature,
        matched_latent=matched,
        mmcs_latents=float(mmcs_latents),
        excluded=excluded,
    )


def _rows(act: Tensor, layer: str) -> Tensor:
    """A layer's output as ``[rows, d]``: ``[B, d]`` as is, ``[B, pos, d]`` -> ``B*pos``, ``[B, C, H, W]`` -> ``B*H*W``."""
    if act.dim() == 2:
        return act
    if act.dim() == 3:
        return act.reshape(-1, act.shape[-1])
    if act.dim() == 4:
        return act.permute(0, 2, 3, 1).reshape(-1, act.shape[1])
    raise MechscopeError(f"layer {layer!r} outputs shape {tuple(act.shape)}; capture_activations needs "
                         "[batch, d], [batch, pos, d] or [batch, channel, H, W] outputs")


@torch.no_grad()
def capture_activations(
    model: nn.Module,
    layer: str,
    batches: Iterable[Tensor | tuple[Any, Tensor] | list[Any]],
    *,
    max_rows: int = 100_000,
) -> Tensor:
    """Collect one layer's activations as ``[N, d]`` rows, to train an SAE on.

    Args:
        model: any ``nn.Module`` (run as it is: put it in eval mode first if it has dropout or batch norm).
        layer: a layer name :func:`mechscope.capture.capture` understands.
        batches: model inputs, each a tensor or an ``(indices, inputs)`` pair (as the dataset loaders yield).
        max_rows: stop once this many rows are collected (the last batch is truncated).

    Returns:
        ``[N, d]`` (detached, on the model's device): ``[B, d]`` outputs as they are, ``[B, pos, d]`` as ``B*pos``
        rows, ``[B, C, H, W]`` maps as ``B*H*W`` rows of ``C`` channels.
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise MechscopeError(f"capture_activations: max_rows must be an integer >= 1, got {max_rows!r}")
    device = model_device(model, default=None)   # a model without weights: the inputs stay where they are
    out: list[Tensor] = []
    n = 0
    for item in batches:
        x = item[-1] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, Tensor):
            raise MechscopeError(f"capture_activations: each batch must be a tensor or an (indices, inputs) pair, "
                                 f"got {type(x).__name__}")
        if device is not None:
            x = x.to(device)
        rows = _rows(capture(model, x, [layer])[layer].detach(), layer)
        out.append(rows[: max_rows - n])
        n += out[-1].shape[0]
        if n >= max_rows:
            break
    if not out:
        raise MechscopeError("capture_activations: no batches given")
    return torch.cat(out)


def sae_on_layer(out_dir: Any, model: str, layer: str, *, dataset: str = "shapes:256", config: SAEConfig | None = None,
                 max_rows: int = 200_000) -> dict[str, Any]:
    """``mechscope sae layer``: an SAE trained on ``layer``'s activations of the zoo image model ``model`` over
    ``dataset`` (a folder or ``shapes:N[:SEED]``; every position of every image is a row, at most ``max_rows``).
    ``config`` gives the dictionary (its ``d_in`` is replaced by the layer's width; default: 1024 top-16
    latents, 2000 steps).  Writes ``out_dir/sae.safetensors`` and ``out_dir/results.json``; returns the JSON
    payload (``rows``, ``width``, ``final`` metrics, ``fraction_of_variance_unexplained``, ...).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out:
    ...     r = sae_on_layer(out, "shapes", "mixed3a", dataset="shapes:2",
    ...                      config=SAEConfig(d_in=1, n_latents=16, kind="topk", k=4, steps=2))
    >>> r["rows"], r["sae"]["n_latents"]
    (512, 16)
    """
    from dataclasses import replace
    from pathlib import Path

    from safetensors.torch import save

    from mechscope.artefacts import atomic_write_bytes, atomic_write_json
    from mechscope.data.open import open_dataset
    from mechscope.zoo.registry import get_card, load

    card = get_card(model)
    net = load(card.name, device="cpu")
    data = open_dataset(dataset, int(card.input_shape[-1]))
    acts = capture_activations(net, layer, data.batches(64), max_rows=max_rows)
    base = config or SAEConfig(d_in=1, n_latents=1024, kind="topk", l1=1e-3, k=16, steps=2000)
    config = replace(base, d_in=int(acts.shape[1]))
    trained = train_sae(acts, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "sae.safetensors", save({k: v.detach().contiguous() for k, v in
                                                      trained.sae.state_dict().items()}))
    final = trained.log[-1]
    variance = float(acts.var(0).sum())
    payload = {"model": card.name, "layer": layer, "dataset": dataset, "rows": int(acts.shape[0]),
               "width": int(acts.shape[1]),
               "sae": {"kind": config.kind, "n_latents": config.n_latents, "l1": config.l1, "k": config.k,
                       "steps": config.steps},
               "final": final, "fraction_of_variance_unexplained": final["mse"] / variance if variance else None,
               "dead_resampled": trained.dead_resampled}
    atomic_write_json(out / "results.json", payload)
    return payload
