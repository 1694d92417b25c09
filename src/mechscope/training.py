"""A small, generic training loop: data source injected, seeded, resumable, with a progress bar.

``train(model, batch, loss, config, checkpoint=path)`` runs ``config.steps`` steps of AdamW with a linear
warm-up and cosine decay.  ``batch(step)`` must be a pure function of the step number (e.g. items
``step * B ... (step + 1) * B`` of a procedural dataset), so that a run stopped at any step and resumed from
its checkpoint sees exactly the batches an uninterrupted run would.  The checkpoint (model, optimizer, step,
metrics log, config, torch RNG state) is written atomically every ``config.checkpoint_every`` steps and at the
end; ``train`` resumes from it when it exists and matches the config.  A loss, gradient or weight that turns NaN/inf
stops the run with a ``MechscopeError`` naming the step; the checkpoint on disk is then the last finite state
(a non-finite state is never saved), and a rerun with the same settings resumes from it.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from mechscope.training import TrainConfig, train
    >>> model = nn.Linear(2, 1)
    >>> def batch(step):
    ...     g = torch.Generator().manual_seed(step)
    ...     x = torch.randn(32, 2, generator=g)
    ...     return x, x.sum(1, keepdim=True)
    >>> def loss(out, y):
    ...     mse = (out - y).pow(2).mean()
    ...     return mse, {"mse": float(mse.detach())}
    >>> log = train(model, batch, loss, TrainConfig(steps=200, lr=0.05, warmup=10), progress=False)
    >>> log[-1]["mse"] < 1e-3
    True
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from mechscope.artefacts import atomic_write_bytes
from mechscope.devices import checked_device, model_device
from mechscope.errors import MechscopeError


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule: AdamW(lr, weight_decay), ``warmup`` linear steps then cosine decay to
    ``lr * final_lr_fraction``; a checkpoint every ``checkpoint_every`` steps; metrics logged every
    ``log_every`` steps (averaged)."""

    steps: int = 1000
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    final_lr_fraction: float = 0.02
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 25
    grad_clip: float | None = 5.0


def lr_at(step: int, config: TrainConfig) -> float:
    """The learning rate of step ``step`` (0-based)."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.final_lr_fraction + (1 - config.final_lr_fraction) * cosine)


def _save(path: Path, payload: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def _diverged(what: str, step: int, config: TrainConfig, path: Path | None, saved: int | None) -> MechscopeError:
    """The error of a run whose ``what`` ("the loss is", ...) turned NaN/inf at 1-based ``step``."""
    if path is None:
        kept = "no checkpoint was being written"
    elif saved is None:
        kept = f"no checkpoint had been written yet to {path}"
    else:
        kept = (f"the last good checkpoint (step {saved}) is kept at {path}: rerunning with the same settings resumes "
                f"from it, other settings need it deleted")
    clip = f"grad_clip={config.grad_clip}" if config.grad_clip is not None else "no gradient clipping"
    return MechscopeError(
        f"training diverged at step {step} of {config.steps}: {what} not finite (NaN or inf). "
        f"Try a lower learning rate (lr={config.lr}), gradient clipping ({clip}, try a smaller value), "
        f"or check the data for NaN/inf values; {kept}")


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it (nested in tuples, lists, dicts) moved to ``device``; the rest as is.

    >>> to_device((torch.ones(1), {"y": torch.zeros(1)}, 3), torch.device("cpu"))[1]["y"].device
    device(type='cpu')
    """
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):   # a named tuple
        return type(value)(*(to_device(v, device) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v, device) for v in value)
    return value


def _finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.is_floating_point())


def train(
    model: nn.Module,
    batch: Callable[[int], tuple[Any, Any]],
    loss: Callable[[Any, Any], tuple[torch.Tensor, dict[str, float]]],
    config: TrainConfig,
    *,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    on_step: Callable[[int, nn.Module], None] | None = None,
    prepare: Callable[[Any], Any] | None = None,
    device: str | torch.device | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place; returns the metrics log (one dict per ``log_every`` steps: ``step``, ``lr``,
    ``seconds`` and the averages of what ``loss`` returned).

    Raises:
        MechscopeError: the loss, the gradient norm (when clipping) or the weights turned NaN/inf; the message
            names the step and what to try, and the checkpoint keeps the last finite state.

    Args:
        batch: ``step -> (inputs, targets)``, a pure function of the step.
        loss: ``(model(inputs), targets) -> (scalar loss, {name: float})``.
        checkpoint: a file; resumed from when present (refused if it was written with another config).
            Only finite states are written to it.
        on_step: called after every step with ``(step + 1, model)`` (e.g. for probes at checkpoints).
        prepare: applied to the inputs before the forward (e.g. a memory-format change).
        device: where to train (``cpu``, ``cuda``, ``cuda:N``; checked by ``devices.checked_device``): the model
            is moved there in place, and every batch (tensors, or dicts / tuples / lists of them) follows it.
            Default: where the model is.  The checkpoint is read onto the CPU and loaded into the model wherever
            it lives; the RNG saved with it is the CPU's (``batch`` draws on the CPU, as the examples do).
    """
    if device is not None:
        model.to(checked_device(device))
    place = model_device(model)
    torch.manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start, log, elapsed = 0, [], 0.0
    saved: int | None = None   # the step of the checkpoint on disk
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is refused with its reason
            raise MechscopeError(f"checkpoint {path} cannot be read ({e}); delete it to start afresh") from None
        if state.get("config") != asdict(config):
            raise MechscopeError(f"checkpoint {path} was written with another training config "
                                 f"({state.get('config')}); delete it or use the same settings")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start, log, elapsed = state["step"], state["log"], state["seconds"]
        saved = start

    def save(step: int) -> None:
        nonlocal saved
        if path is not None:
            if not _finite(model):
                raise _diverged("the weights are", step, config, path, saved)
            saved = step
            _save(path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "log": log,
                         "config": asdict(config), "rng": torch.get_rng_state(), "seconds": elapsed})

    model.train()
    sums: dict[str, float] = {}
    count = 0
    with tqdm(total=config.steps, initial=start, disable=not progress, desc="train", unit="step") as bar:
        t0 = time.perf_counter()
        for step in range(start, config.steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, config)
            inputs, targets = to_device(batch(step), place)
            if prepare is not None:
                inputs = prepare(inputs)
            value, metrics = loss(model(inputs), targets)
            loss_value = float(value.detach())
            if not math.isfinite(loss_value):
                raise _diverged("the loss is", step + 1, config, path, saved)
            opt.zero_grad(set_to_none=True)
            value.backward()
            if config.grad_clip is not None:
                norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                if not bool(torch.isfinite(norm)):
                    raise _diverged("the gradient norm is", step + 1, config, path, saved)
            opt.step()
            for k, v in {"loss": loss_value, **metrics}.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            bar.update(1)
            if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                now = time.perf_counter()
                elapsed, t0 = elapsed + now - t0, now
                log.append({"step": step + 1, "lr": lr_at(step, config), "seconds": round(elapsed, 1),
                            **{k: v / count for k, v in sums.items()}})
                bar.set_postfix({k: f"{v:.3f}" for k, v in log[-1].items() if k not in ("step", "lr", "seconds")})
                sums, count = {}, 0
            if on_step is not None:
                on_step(step + 1, model)
                model.train()
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                save(step + 1)
    model.eval()
    return log
