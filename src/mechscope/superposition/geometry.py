"""The paper's geometry sweep: dimensions per feature ``m / ||W||_F²`` against ``1 / (1 - S)``, many densities and
seeds trained as the instances of one batched toy model, and an objective finder of the curve's plateaus.

*Toy Models of Superposition* (Elhage et al. 2022, "Feature Dimensionality") trains ReLU-output toy models with
uniform importance over a range of sparsities and finds that dimensions per feature does not fall smoothly: it
*sticks* at fractions such as 1 (no superposition), 1/2 (antipodal pairs) and 2/5 (pentagons).  Here every
(density, seed) pair is one instance of ``toy.train_toy`` (closed-form gradients, one flat AdamW step for all
instances, data drawn many steps at a time - no Python loop over instances), AdamW with weight decay 0.01 as the
paper's colab.  The density grid is denser at the dense end (``density_grid``), where the plateau at 1 lives.

:func:`find_plateaus` is the finder: the runs of consecutive grid points whose value lies within ``tol`` of a
level, each with its extent in ``1 / (1 - S)`` and in decades.  :func:`smooth_control` is what a curve that does
*not* stick would look like: the straight line in ``log(1 / (1 - S))`` between the measured curve's two ends.

Example (a tiny sweep, a few steps)::

    >>> from mechscope.superposition.geometry import GeometryOptions, geometry_sweep, find_plateaus
    >>> r = geometry_sweep(GeometryOptions(n_features=8, n_hidden=2, densities=(1.0, 0.5, 0.1), seeds=2, steps=5))
    >>> r.dpf.shape, r.mean.shape
    (torch.Size([2, 3]), torch.Size([3]))
    >>> [p.count for p in find_plateaus([1, 2, 4, 8, 16], [1.0, 0.99, 0.7, 0.51, 0.5], 0.5, tol=0.03)]
    [2]
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mechscope.errors import MechscopeError
from mechscope.superposition.metrics import dimensions_per_feature
from mechscope.superposition.toy import ToyConfig, train_toy


def density_grid(dense: int = 10, sparse: int = 18, knee: float = 2.0, top: float = 1000.0) -> tuple[float, ...]:
    """Feature densities ``1 - S`` whose ``1 / (1 - S)`` runs log-evenly over ``[1, knee]`` in ``dense`` points and
    over ``(knee, top]`` in ``sparse`` more: denser at the dense end than one log-even grid of the same size.

    >>> g = density_grid(3, 2, knee=4.0, top=16.0)
    >>> [round(1 / d, 3) for d in g]
    [1.0, 2.0, 4.0, 8.0, 16.0]
    """
    if dense < 2 or sparse < 1 or not 1.0 < knee < top:
        raise MechscopeError(f"density_grid needs dense >= 2, sparse >= 1 and 1 < knee < top; got {dense}, "
                             f"{sparse}, {knee}, {top}.")
    a = [knee ** (i / (dense - 1)) for i in range(dense)]
    b = [knee * (top / knee) ** (i / sparse) for i in range(1, sparse + 1)]
    return tuple(1.0 / x for x in a + b)


#: Densities at or below this train on sparse inputs (``train_toy(sparse_inputs=True)``).  Where the two routes
#: cost the same at n = 400, m = 30, batch 1024 (CPU time per step, one core, 2026-12-05): 4.0 ms each at
#: ``1 / (1 - S) = 32``; the sparse route costs 6.5 ms at 16, 2.6 ms at 64 and 1.45 ms at 1000, the dense one
#: about 4 ms throughout.
SPARSE_BELOW = 1 / 32


@dataclass(frozen=True)
class GeometryOptions:
    """One geometry sweep: ``n_features`` x ``n_hidden`` ReLU-output toy models with uniform importance at each of
    ``densities`` (feature probability ``1 - S``), ``seeds`` independent instances each, trained ``steps`` steps of
    AdamW (``lr``, ``weight_decay``; batch ``batch_size``).  The defaults are the paper's scale, n = 400, m = 30.

    ``group_size``: instances per batched model (group g trains with seed ``seed + g``; 0 = all in one model).
    One instance per model is fastest at n = 400: its batch (1.6 MB per tensor) stays in cache, where 8 at once
    stream 13 MB tensors through memory (per instance-step 4.1 ms alone against 6.7 ms in eights, one loaded core).
    ``sparse``: groups whose densities are all ``<= SPARSE_BELOW`` train on sparse inputs (same distribution,
    another random stream).  ``workers``: groups trained side by side in threads, each with
    ``torch.get_num_threads() // workers`` intra-op threads (at least 1); the result does not depend on it."""

    n_features: int = 400
    n_hidden: int = 30
    densities: tuple[float, ...] = density_grid()
    seeds: int = 3
    steps: int = 10_000
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    group_size: int = 1
    sparse: bool = True
    workers: int = 2


@dataclass
class GeometrySweep:
    """A sweep's result: ``one_over_density [D]``, ``dpf [seeds, D]`` (``m / ||W||_F²`` per instance), its seed
    ``mean`` and ``std [D]``, the final ``losses [seeds, D]``, the weights ``W [seeds, D, n, m]`` and ``seconds``."""

    options: GeometryOptions
    one_over_density: Tensor
    dpf: Tensor
    mean: Tensor
    std: Tensor
    losses: Tensor
    W: Tensor
    seconds: float


def geometry_sweep(options: GeometryOptions = GeometryOptions(), progress: bool = False) -> GeometrySweep:
    """Train every (seed, density) of ``options`` as one batched toy model (instance ``s * D + d`` is seed ``s`` at
    density ``d``) and measure dimensions per feature."""
    o = options
    if not o.densities or any(not 0.0 < d <= 1.0 for d in o.densities):
        raise MechscopeError(f"densities must be in (0, 1], got {o.densities}.")
    if o.seeds < 1:
        raise MechscopeError(f"seeds must be >= 1, got {o.seeds}.")
    if o.workers < 1:
        raise MechscopeError(f"workers must be >= 1, got {o.workers}.")
    D = len(o.densities)
    p = torch.tensor(o.densities, dtype=torch.float32).repeat(o.seeds)[:, None]   # [seeds * D, 1]
    size = o.group_size if o.group_size > 0 else len(p)
    groups = [p[lo: lo + size] for lo in range(0, len(p), size)]

    per_worker = max(1, torch.get_num_threads() // o.workers)

    def train(g: int):
        if o.workers > 1:
            torch.set_num_threads(per_worker)   # this thread's own OpenMP setting
        part = groups[g]
        sparse = o.sparse and float(part.max()) <= SPARSE_BELOW
        t = train_toy(ToyConfig(o.n_features, o.n_hidden, len(part)), 1.0, part, steps=o.steps,
                      batch_size=o.batch_size, lr=o.lr, weight_decay=o.weight_decay, seed=o.seed + g,
                      progress=progress and o.workers == 1, sparse_inputs=sparse)
        return t.model.W.detach().cpu(), t.losses

    start = time.perf_counter()
    if o.workers == 1:
        done = [train(g) for g in range(len(groups))]
    else:
        from concurrent.futures import ThreadPoolExecutor

        from tqdm.auto import tqdm

        threads = torch.get_num_threads()
        torch.set_num_threads(per_worker)
        try:
            with ThreadPoolExecutor(o.workers) as pool:
                # the costly (dense) groups first, so that the last ones to finish are short
                order = sorted(range(len(groups)), key=lambda g: -float(groups[g].max()))
                futures = {g: pool.submit(train, g) for g in order}
                bar = tqdm(total=len(groups), disable=not progress, desc="geometry sweep", unit="model")
                for g in order:
                    futures[g].result()
                    bar.update(1)
                bar.close()
                done = [futures[g].result() for g in range(len(groups))]
        finally:
            torch.set_num_threads(threads)
    Ws, losses = [w for w, _ in done], [l for _, l in done]
    seconds = time.perf_counter() - start
    W = torch.cat(Ws).view(o.seeds, D, o.n_features, o.n_hidden)
    dpf = dimensions_per_feature(W)
    return GeometrySweep(o, 1.0 / torch.tensor(o.densities, dtype=torch.float64), dpf, dpf.mean(0),
                         dpf.std(0) if o.seeds > 1 else torch.zeros(D), torch.cat(losses).view(o.seeds, D), W,
                         seconds)


@dataclass(frozen=True)
class Plateau:
    """A run of consecutive grid points ``start .. end`` (inclusive) within ``tol`` of ``level``: ``count`` points,
    from ``x_from`` to ``x_to`` (``1 / (1 - S)``), spanning ``decades = log10(x_to / x_from)``."""

    level: float
    start: int
    end: int
    count: int
    x_from: float
    x_to: float
    decades: float

    def as_dict(self) -> dict:
        return {"level": round(self.level, 4), "count": self.count, "x_from": round(self.x_from, 4),
                "x_to": round(self.x_to, 4), "decades": round(self.decades, 4)}


def find_plateaus(x: Sequence[float] | Tensor, y: Sequence[float] | Tensor, level: float,
                  tol: float = 0.03) -> list[Plateau]:
    """The runs of consecutive points of the curve ``y [N]`` over increasing ``x [N]`` with ``|y - level| <= tol``,
    longest (in decades of ``x``, then in points) first."""
    xs, ys = [float(v) for v in x], [float(v) for v in y]
    if len(xs) != len(ys) or any(b <= a for a, b in zip(xs, xs[1:])) or min(xs, default=1.0) <= 0:
        raise MechscopeError("find_plateaus needs equally long x and y with x positive and increasing.")
    runs, start = [], None
    for i, v in enumerate(ys + [math.nan]):
        inside = abs(v - level) <= tol
        if inside and start is None:
            start = i
        elif not inside and start is not None:
            runs.append(Plateau(level, start, i - 1, i - start, xs[start], xs[i - 1],
                                math.log10(xs[i - 1] / xs[start])))
            start = None
    return sorted(runs, key=lambda r: (-r.decades, -r.count, r.start))


def longest_plateau(x: Sequence[float] | Tensor, y: Sequence[float] | Tensor, level: float,
                    tol: float = 0.03) -> Plateau | None:
    """The longest run of :func:`find_plateaus`, or ``None`` when no point lies within ``tol`` of ``level``."""
    runs = find_plateaus(x, y, level, tol)
    return runs[0] if runs else None


def smooth_control(x: Sequence[float] | Tensor, y: Sequence[float] | Tensor) -> Tensor:
    """The curve that does not stick: the straight line in ``log x`` from ``y``'s first value to its last, on the
    same ``x [N]`` (a smooth monotone curve with the measured curve's ends).

    >>> [round(v, 6) for v in smooth_control([1, 10, 100], [1.0, 0.7, 0.2]).tolist()]
    [1.0, 0.6, 0.2]
    """
    lx = torch.tensor([math.log(float(v)) for v in x], dtype=torch.float64)
    ys = torch.as_tensor(y, dtype=torch.float64)
    frac = (lx - lx[0]) / (lx[-1] - lx[0])
    return ys[0] + frac * (ys[-1] - ys[0])


def plot_sweep(sweep: GeometrySweep, plateaus: Sequence[Plateau] = (), control: Tensor | None = None):
    """Dimensions per feature against ``1 / (1 - S)`` (log x): each seed faint, the seed mean with its spread, the
    levels 1 and 1/2, the plateaus found shaded, and the smooth control dashed.  Returns a matplotlib Figure."""
    from mechscope.plots import agg_figure

    fig = agg_figure(5.6, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    x = sweep.one_over_density.numpy()
    for row in sweep.dpf:
        ax.plot(x, row.numpy(), "-", c="0.75", lw=0.6)
    ax.errorbar(x, sweep.mean.numpy(), yerr=sweep.std.numpy(), fmt="o-", ms=3, lw=1.2, capsize=2, label="seed mean")
    if control is not None:
        ax.plot(x, control.numpy(), "--", c="tab:red", lw=1, label="smooth control")
    for level in (1.0, 0.5, 0.4):
        ax.axhline(level, ls=":", c="k", lw=0.7)
    for p in plateaus:
        ax.axvspan(p.x_from, p.x_to, color="tab:green", alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("1 / (1 - S)")
    ax.set_ylabel("dimensions per feature  m / ||W||_F²")
    o = sweep.options
    ax.set_title(f"n={o.n_features}, m={o.n_hidden}, {o.seeds} seeds, {o.steps} steps, AdamW wd {o.weight_decay}",
                 fontsize=8)
    ax.legend(fontsize=7)
    return fig


def summarise(sweep: GeometrySweep, tol: float = 0.03, levels: Sequence[float] = (1.0, 0.5)) -> dict:
    """A JSON-able summary: settings, the per-density seed mean and spread, and per level the longest plateau of
    the seed-mean curve and of :func:`smooth_control` (``tol`` around the level)."""
    x = sweep.one_over_density
    control = smooth_control(x, sweep.mean)
    plateaus = {}
    for level in levels:
        found, ctrl = longest_plateau(x, sweep.mean, level, tol), longest_plateau(x, control, level, tol)
        plateaus[str(level)] = {"plateau": found.as_dict() if found else None,
                                "control_plateau": ctrl.as_dict() if ctrl else None}
    o = sweep.options
    return {"n_features": o.n_features, "n_hidden": o.n_hidden, "seeds": o.seeds, "steps": o.steps,
            "batch_size": o.batch_size, "lr": o.lr, "weight_decay": o.weight_decay, "tol": tol,
            "one_over_density": [round(float(v), 4) for v in x],
            "dimensions_per_feature_mean": [round(float(v), 4) for v in sweep.mean],
            "dimensions_per_feature_std": [round(float(v), 4) for v in sweep.std],
            "dimensions_per_feature": [[round(float(v), 4) for v in row] for row in sweep.dpf],
            "control_curve": [round(float(v), 4) for v in control], "plateaus": plateaus,
            "train_seconds": round(sweep.seconds, 2)}


def run_sweep(options: GeometryOptions, out, tol: float = 0.03, progress: bool = False) -> dict:
    """Train :func:`geometry_sweep`, write ``out/geometry.json`` (:func:`summarise`) and ``out/geometry.png``
    (:func:`plot_sweep`); return the summary."""
    from pathlib import Path

    from mechscope.artefacts import atomic_write_json
    from mechscope.plots import save_figure

    out = Path(out)
    sweep = geometry_sweep(options, progress=progress)
    summary = summarise(sweep, tol)
    found = [longest_plateau(sweep.one_over_density, sweep.mean, float(k), tol) for k in summary["plateaus"]]
    save_figure(plot_sweep(sweep, [p for p in found if p], smooth_control(sweep.one_over_density, sweep.mean)),
                out / "geometry.png", dpi=80)
    atomic_write_json(out / "geometry.json", summary)
    return summary
