"""The toy models of *Toy Models of Superposition* (Elhage et al. 2022), batched over instances.

(Over 400 lines because the four toy models, their data, their batched training and `best_of` are one unit:
every experiment of the paper uses all of them together.)

One :class:`ToyModel` holds ``n_instances`` independent small models side by side (every
parameter has a leading ``instances`` axis), so a whole sweep over feature densities,
importances and seeds trains as one set of batched tensor ops.  The loss is summed over
instances, so each instance's gradient depends only on its own parameters and data.

Models (``x [batch, instances, n_features]``, ``W [instances, n_features, n_hidden]``):

* ``"relu_output"``: ``h = x W``, ``out = ReLU(h Wᵀ + b)``  (the paper's main model)
* ``"linear"``: ``h = x W``, ``out = h Wᵀ + b``
* ``"relu_hidden"``: ``h = ReLU(x W)``, ``out = ReLU(h Wᵀ + b)``  (privileged basis)
* ``"abs"``: ``h = ReLU(x W1)``, ``out = ReLU(h W2 + b)`` trained to output ``|x|``

>>> cfg = ToyConfig(n_features=5, n_hidden=2, n_instances=3)
>>> model = ToyModel(cfg, seed=0)
>>> tuple(model.W.shape), tuple(model.b_final.shape)
((3, 5, 2), (3, 5))
>>> x = generate_batch(cfg, 4, 0.5, generator=torch.Generator().manual_seed(0))
>>> tuple(x.shape), tuple(model(x).shape), tuple(model.hidden(x).shape)
((4, 3, 5), (4, 3, 5), (4, 3, 2))
>>> importance_decay(3, 0.5)
tensor([1.0000, 0.5000, 0.2500])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from mechscope.devices import model_device
from mechscope.errors import MechscopeError, unknown_name
from mechscope.superposition.fast import adamw_step, FastToy
from mechscope.superposition.sparse import SparseToy, sparse_batches

__all__ = [
    "MODELS",
    "SCHEDULES",
    "ToyConfig",
    "ToyModel",
    "TrainedToy",
    "best_of",
    "generate_batch",
    "importance_decay",
    "targets",
    "train_toy",
]

MODELS = ("relu_output", "linear", "relu_hidden", "abs")
SCHEDULES = ("constant", "linear", "cosine")

#: How many final steps :func:`train_toy` averages into ``TrainedToy.losses``.
LOSS_TAIL = 100


@dataclass(frozen=True)
class ToyConfig:
    """Shape of a batch of toy models.

    Correlated pairs occupy features ``0 .. 2*n_correlated_pairs - 1`` (pair k = features
    ``2k, 2k+1``); anticorrelated pairs the next ``2*n_anticorrelated_pairs`` features; the rest
    are independent.
    """

    n_features: int = 5
    n_hidden: int = 2
    n_instances: int = 1
    model: str = "relu_output"
    n_correlated_pairs: int = 0
    n_anticorrelated_pairs: int = 0

    def __post_init__(self) -> None:
        for name in ("n_features", "n_hidden", "n_instances"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MechscopeError(f"ToyConfig.{name} must be a positive int, got {value!r}.")
        for name in ("n_correlated_pairs", "n_anticorrelated_pairs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MechscopeError(f"ToyConfig.{name} must be an int >= 0, got {value!r}.")
        if self.model not in MODELS:
            raise unknown_name("toy model", str(self.model), MODELS)
        paired = 2 * (self.n_correlated_pairs + self.n_anticorrelated_pairs)
        if paired > self.n_features:
            raise MechscopeError(
                f"ToyConfig: {self.n_correlated_pairs} correlated + {self.n_anticorrelated_pairs} "
                f"anticorrelated pairs need {paired} features, but n_features={self.n_features}; "
                f"use at most n_features // 2 = {self.n_features // 2} pairs in all."
            )


def _xavier(shape: tuple[int, ...], fan_in: int, fan_out: int, generator: torch.Generator | None) -> Tensor:
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return torch.randn(shape, generator=generator) * std


class ToyModel(nn.Module):
    """``n_instances`` independent toy models of one :class:`ToyConfig`.

    Parameters: ``W [instances, n_features, n_hidden]`` and ``b_final [instances, n_features]``,
    or for ``"abs"`` ``W1 [instances, n_features, n_hidden]``, ``W2 [instances, n_hidden,
    n_features]`` and ``b_final``.

    Initialisation: every instance's weight matrix is Xavier-normal *as a 2-D matrix*,
    ``std = sqrt(2 / (n_features + n_hidden))``, independent of ``n_instances``; ``b_final = 0``.
    (The paper's colab calls ``xavier_normal_`` on the whole 3-D tensor, whose torch fan
    convention gives ``std = sqrt(2 / (n_hidden * (n_features + n_instances)))`` - a scale that
    changes with the number of instances, which would make :func:`best_of` and sweeps of
    different widths start from different scales.)  ``seed`` seeds a private
    :class:`torch.Generator`; ``None`` uses torch's global RNG.
    """

    def __init__(self, config: ToyConfig, seed: int | None = None) -> None:
        super().__init__()
        self.config = config
        g = None if seed is None else torch.Generator().manual_seed(int(seed))
        inst, nf, nh = config.n_instances, config.n_features, config.n_hidden
        if config.model == "abs":
            self.W1 = nn.Parameter(_xavier((inst, nf, nh), nf, nh, g))
            self.W2 = nn.Parameter(_xavier((inst, nh, nf), nh, nf, g))
        else:
            self.W = nn.Parameter(_xavier((inst, nf, nh), nf, nh, g))
        self.b_final = nn.Parameter(torch.zeros(inst, nf))

    def hidden(self, x: Tensor) -> Tensor:
        """Hidden activations ``[batch, instances, n_hidden]`` for ``x [batch, instances, n_features]``.

        ``x W`` for ``"relu_output"``/``"linear"``, ``ReLU(x W)`` for ``"relu_hidden"`` and
        ``ReLU(x W1)`` for ``"abs"``.
        """
        kind = self.config.model
        if kind == "abs":
            return torch.relu(torch.einsum("bif,ifh->bih", x, self.W1))
        h = torch.einsum("bif,ifh->bih", x, self.W)
        return torch.relu(h) if kind == "relu_hidden" else h

    def forward(self, x: Tensor) -> Tensor:
        """``x [batch, instances, n_features] -> [batch, instances, n_features]``."""
        h = self.hidden(x)
        kind = self.config.model
        if kind == "abs":
            out = torch.einsum("bih,ihf->bif", h, self.W2)
        else:
            out = torch.einsum("bih,ifh->bif", h, self.W)
        out = out + self.b_final
        return out if kind == "linear" else torch.relu(out)

    def extra_repr(self) -> str:
        return repr(self.config)


def _broadcast(value: float | Tensor, config: ToyConfig, name: str, *, probability: bool = False) -> Tensor:
    """``value`` as a float32 tensor ``[instances, n_features]`` (a broadcast copy)."""
    t = torch.as_tensor(value, dtype=torch.float32)
    shape = (config.n_instances, config.n_features)
    try:
        t = t.expand(shape).clone()
    except RuntimeError:
        raise MechscopeError(
            f"{name} of shape {tuple(t.shape)} does not broadcast to [instances, n_features] = {list(shape)}."
        ) from None
    if probability and not bool(((t >= 0) & (t <= 1)).all()):
        raise MechscopeError(f"{name} must lie in [0, 1]; got values from {t.min().item():g} to {t.max().item():g}.")
    return t


def _generate(config: ToyConfig, batch_size: int, p: Tensor, generator: torch.Generator | None, device) -> Tensor:
    """The hot path of :func:`generate_batch`; ``p [instances, n_features]`` already checked."""
    shape = (batch_size, config.n_instances, config.n_features)
    draws = torch.rand((2, *shape), generator=generator, device=device)
    values, u = draws[0], draws[1]
    if config.model == "abs":
        values = values * 2 - 1
    nc, na = config.n_correlated_pairs, config.n_anticorrelated_pairs
    if nc == 0 and na == 0:
        return values * (u < p)
    present = u < p
    if nc:
        # one Bernoulli per pair: the pair's first draw against its first feature's probability
        first = u[..., 0 : 2 * nc : 2] < p[..., 0 : 2 * nc : 2]  # [b, i, nc]
        present[..., : 2 * nc] = first.repeat_interleave(2, dim=-1)
    if na:
        lo, hi = 2 * nc, 2 * (nc + na)
        active = u[..., lo:hi:2] < p[..., lo:hi:2]  # the pair is on with its first feature's p
        which = u[..., lo + 1 : hi : 2] < 0.5  # True: the first feature of the pair, else the second
        present[..., lo:hi:2] = active & which
        present[..., lo + 1 : hi : 2] = active & ~which
    return values * present


def generate_batch(
    config: ToyConfig,
    batch_size: int,
    feature_probability: float | Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A synthetic batch ``x [batch_size, instances, n_features]``.

    Each feature takes a value ``U[0, 1]`` (``U[-1, 1]`` for the ``"abs"`` model) where an
    independent Bernoulli with probability ``p`` (``feature_probability``, a float or a tensor
    broadcastable to ``[instances, n_features]``; the density, ``1 - S``) fires, and is 0 otherwise.

    Correlated pair ``(a, a+1)``: one Bernoulli with the probability of feature ``a`` switches
    both on or both off (values still independent).  Anticorrelated pair ``(a, a+1)``: one
    Bernoulli with the probability ``p_a`` of feature ``a`` decides whether the pair is active;
    if it is, a fair coin picks which one of the two is present.  So at most one of the pair is
    ever on, and each is on with marginal probability ``p_a / 2``.  The second feature's
    probability of a pair is ignored.

    The tensor lives on ``generator.device`` when a generator is given, else on
    ``feature_probability``'s device (CPU for a float).
    """
    if batch_size < 1:
        raise MechscopeError(f"batch_size must be >= 1, got {batch_size}.")
    if generator is not None:
        device = generator.device
    elif isinstance(feature_probability, Tensor):
        device = feature_probability.device
    else:
        device = torch.device("cpu")
    p = _broadcast(feature_probability, config, "feature_probability", probability=True).to(device)
    return _generate(config, batch_size, p, generator, device)


def targets(config: ToyConfig, x: Tensor) -> Tensor:
    """What the model should output for ``x``: ``x`` itself, or ``|x|`` for the ``"abs"`` model."""
    return x.abs() if config.model == "abs" else x


def importance_decay(n_features: int, rate: float) -> Tensor:
    """Feature importances ``rate ** i`` for ``i = 0 .. n_features - 1``, shape ``[n_features]``."""
    return rate ** torch.arange(n_features, dtype=torch.float32)


@dataclass(frozen=True)
class TrainedToy:
    """A trained :class:`ToyModel` with what it was trained on.

    ``losses [instances]``: each instance's importance-weighted MSE averaged over the last
    ``min(LOSS_TAIL, steps)`` = 100 training steps (100 x batch_size fresh samples, no extra
    compute; with ``steps=0`` one fresh batch of ``batch_size`` is evaluated instead).
    ``importance`` and ``feature_probability`` are ``[instances, n_features]``.  ``log``: about
    100 entries ``{"step", "lr", "loss" (mean over instances), "losses" (list per instance)}``;
    :func:`best_of` appends one ``{"event": "best_of", ...}`` entry.
    """

    model: ToyModel
    config: ToyConfig
    losses: Tensor
    importance: Tensor
    feature_probability: Tensor
    log: list[dict] = field(default_factory=list)


def _lr_factor(schedule: str, step: int, steps: int) -> float:
    if schedule == "linear":
        return 1.0 - step / steps
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / steps))
    return 1.0


def _data_seed(seed: int) -> int:
    """A seed for the data stream that differs from the init seed's stream."""
    return (int(seed) * 6364136223846793005 + 1442695040888963407) % (2**63)


#: About how many floats one chunk of pre-drawn training data holds (``steps x instances x (features + 1) x batch``).
CHUNK_ELEMENTS = 1 << 20



def _batches(config: ToyConfig, batch_size: int, p: Tensor, generator: torch.Generator | None, device, steps: int):
    """The training data of :func:`train_toy`: ``steps`` batches ``[instances, n_features + 1, batch]`` - the batch
    transposed (``x[i, :n_features]`` is instance i's ``xᵀ``) with a last row of ones - drawn ``CHUNK_ELEMENTS``-sized
    chunks of steps at a time.  A yielded tensor is only valid until the next one is asked for.

    Independent features (no pairs) take one uniform draw ``u`` per entry: ``x = ReLU((u - (1 - p)) / p)`` is 0
    with probability ``1 - p`` and, given that it is not, ``U[0, 1]`` (``2 x - 1`` where nonzero for ``"abs"``) -
    the distribution of :func:`generate_batch`, for half its random numbers (the values then lie on a grid of
    ``2**-24 / p``: 16,777 levels at ``p = 0.001``).  Configs with pairs draw through :func:`generate_batch`'s
    own sampler.
    """
    inst, nf = config.n_instances, config.n_features
    per_step = inst * (nf + 1) * batch_size
    chunk = max(1, min(steps, CHUNK_ELEMENTS // per_step))
    simple = config.n_correlated_pairs == 0 and config.n_anticorrelated_pairs == 0
    buf = torch.empty((chunk, inst, nf + 1, batch_size), device=device)
    buf[:, :, nf].fill_(1.0)
    q = (1 - p)[:, :, None]  # [I, F, 1]
    a = torch.where(p > 0, 1 / p.clamp_min(1e-30), 0.0)[:, :, None]  # p = 0: (u - 1) * 0 <= 0, never on
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        x = buf[:n, :, :nf]
        if simple:
            x.uniform_(generator=generator).sub_(q).mul_(a).relu_()
            if config.model == "abs":
                x.copy_(x.mul(2).sub_(1).mul_(x > 0))
        else:
            draw = _generate(config, n * batch_size, p, generator, device)
            x.copy_(draw.view(n, batch_size, inst, nf).permute(0, 2, 3, 1))
        yield from buf[:n]
        done += n


def train_toy(
    config: ToyConfig,
    importance: float | Tensor,
    feature_probability: float | Tensor,
    *,
    steps: int = 10_000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    seed: int = 0,
    progress: bool = True,
    model: ToyModel | None = None,
    sparse_inputs: bool = False,
) -> TrainedToy:
    """Train all instances of ``config`` at once with AdamW on fresh synthetic batches.

    ``importance`` and ``feature_probability``: floats or tensors broadcastable to
    ``[instances, n_features]``.  Per instance the loss is ``(importance * (out - target)**2)``
    averaged over batch and features; the backward pass uses their sum over instances, so
    instances train independently.  ``schedule`` scales ``lr`` each step by 1 (``"constant"``),
    ``1 - t/steps`` (``"linear"``) or ``(1 + cos(pi t/steps)) / 2`` (``"cosine"``).  ``seed``
    seeds the initialisation (``ToyModel(config, seed)``) and, through a derived seed, the data
    generator.  ``model``: continue training this model in place (its device is used) instead
    of a fresh one.  ``weight_decay`` defaults to 0 (plain Adam); the paper's colab used AdamW's
    default 0.01.

    The loop is built for speed, since at these sizes a step costs little but per-op overhead: the data
    for many steps is drawn at once (one uniform draw per entry, see :func:`_batches`), the gradients are
    computed in closed form (:class:`FastToy`, checked against autograd in the tests) and the AdamW update
    (exactly ``torch.optim.AdamW``'s arithmetic) runs on one flat tensor holding all parameters, which are
    copied back into ``model`` at the end.  Losses are only evaluated at log steps and in the final tail.

    ``sparse_inputs``: draw each batch as its list of active entries and compute the two products that touch
    ``x`` over that list (``sparse.SparseToy``; ``"relu_output"`` models with independent features and one
    probability per instance): the same model, loss and data distribution, much cheaper at low density (a
    different random stream, so not the same numbers as the dense route for a seed).
    """
    if schedule not in SCHEDULES:
        raise unknown_name("lr schedule", str(schedule), SCHEDULES)
    if steps < 0 or batch_size < 1:
        raise MechscopeError(f"steps must be >= 0 and batch_size >= 1, got steps={steps}, batch_size={batch_size}.")
    if model is None:
        model = ToyModel(config, seed=seed)
    elif model.config != config:
        raise MechscopeError(f"train_toy: model was built for {model.config}, not {config}.")
    device = model_device(model)
    imp = _broadcast(importance, config, "importance")
    p = _broadcast(feature_probability, config, "feature_probability", probability=True)
    imp_d, p_d = imp.to(device), p.to(device)
    g = torch.Generator(device=device).manual_seed(_data_seed(seed))
    if sparse_inputs and (config.model != "relu_output" or config.n_correlated_pairs or config.n_anticorrelated_pairs
                          or not bool((p == p[:, :1]).all())):
        raise MechscopeError("sparse_inputs needs a \"relu_output\" model with independent features and one feature "
                             f"probability per instance; got model {config.model!r}, "
                             f"{config.n_correlated_pairs + config.n_anticorrelated_pairs} pairs.")

    log: list[dict] = []
    model.train()
    if steps == 0:
        with torch.no_grad():
            x = _generate(config, batch_size, p_d, g, device)
            final = ((model(x) - targets(config, x)).square_() * imp_d).mean(dim=(0, 2))
    else:
        params = list(model.parameters())
        with torch.no_grad():
            flat = torch.cat([q.detach().reshape(-1) for q in params])
        grad_flat, exp_avg, exp_avg_sq = torch.zeros_like(flat), torch.zeros_like(flat), torch.zeros_like(flat)
        views, grads, offset = [], [], 0
        for q in params:
            views.append(flat[offset : offset + q.numel()].view(q.shape))
            grads.append(grad_flat[offset : offset + q.numel()].view(q.shape))
            offset += q.numel()
        if sparse_inputs:
            fast = SparseToy(views, grads, imp_d, batch_size)
            data = sparse_batches(p_d, batch_size, g, steps)
        else:
            fast = FastToy(config.model, views, grads, imp_d, batch_size)
            data = _batches(config, batch_size, p_d, g, device, steps)
        tail = min(LOSS_TAIL, steps)
        tail_sum = torch.zeros(config.n_instances, device=device)
        log_every = max(1, steps // 100)
        bar = tqdm(total=steps, disable=not progress, desc=f"toy {config.model}", leave=False)
        with torch.no_grad():
            for step, x in enumerate(data):
                cur_lr = lr if schedule == "constant" else lr * _lr_factor(schedule, step, steps)
                logging = step % log_every == 0 or step == steps - 1
                in_tail = step >= steps - tail
                per_instance = fast.backward(x, logging or in_tail)
                adamw_step(flat, grad_flat, exp_avg, exp_avg_sq, step + 1, cur_lr, weight_decay)
                fast.refresh()
                if in_tail:
                    tail_sum += per_instance
                if logging:
                    values = per_instance.cpu()
                    entry = {"step": step, "lr": cur_lr, "loss": values.mean().item(), "losses": values.tolist()}
                    log.append(entry)
                    if progress:
                        bar.update(step + 1 - bar.n)
                        bar.set_postfix(loss=f"{entry['loss']:.3g}")
            for q, v in zip(params, views, strict=True):
                q.copy_(v)
        bar.close()
        final = tail_sum / tail
    return TrainedToy(
        model=model,
        config=config,
        losses=final.detach().cpu(),
        importance=imp,
        feature_probability=p,
        log=log,
    )


def best_of(
    k: int,
    config: ToyConfig,
    importance: float | Tensor,
    feature_probability: float | Tensor,
    **train_kwargs,
) -> TrainedToy:
    """Train ``k`` seeds of every instance in one model and keep each instance's lowest-loss seed.

    The ``k * n_instances`` instances are laid out seed-major (instance ``s * n_instances + i``
    is seed ``s`` of instance ``i``) and trained by :func:`train_toy` with ``train_kwargs``
    (one ``seed`` for the whole wide model).  Returns a :class:`TrainedToy` of ``config``
    (``n_instances`` instances) holding the kept parameters and their ``losses``; its ``log`` is
    the wide run's, plus a last entry ``{"event": "best_of", "k", "seed_losses" [k][n],
    "chosen" [n]}``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise MechscopeError(f"best_of: k must be a positive int, got {k!r}.")
    if "model" in train_kwargs:
        raise MechscopeError("best_of trains fresh models; it takes no model=.")
    n = config.n_instances
    wide = dataclasses.replace(config, n_instances=k * n)
    imp = _broadcast(importance, config, "importance")
    p = _broadcast(feature_probability, config, "feature_probability", probability=True)
    trained = train_toy(wide, imp.repeat(k, 1), p.repeat(k, 1), **train_kwargs)
    seed_losses = trained.losses.view(k, n)
    chosen = seed_losses.argmin(dim=0)  # [n]
    index = chosen * n + torch.arange(n)
    device = model_device(trained.model)
    kept = ToyModel(config).to(device)
    with torch.no_grad():
        for name, param in trained.model.named_parameters():
            getattr(kept, name).copy_(param[index.to(device)])
    log = list(trained.log)
    log.append({"event": "best_of", "k": k, "seed_losses": seed_losses.tolist(), "chosen": chosen.tolist()})
    return TrainedToy(
        model=kept,
        config=config,
        losses=seed_losses.gather(0, chosen[None]).squeeze(0),
        importance=imp,
        feature_probability=p,
        log=log,
    )
