"""The experiments of *Toy Models of Superposition* (Elhage et al. 2022) as a table of settings.

(Over 400 lines because it is the paper's table of experiments, one short function each, readable in one
place beside the table that names them.)

Each entry of ``EXPERIMENTS`` is a function ``(steps, k, progress) -> ExperimentResult`` that trains every
setting of the experiment as instances of one batched model (``toy.best_of``: ``k`` seeds per setting, the
lowest loss kept, as the paper kept its best runs) and returns per-instance metrics, the weights and the
paper's figures.  ``run_experiment(name, out)`` also writes ``out/results.json``, ``out/weights.safetensors``
(``W [instances, n_features, n_hidden]`` — ``W1`` for the computation model — and ``b_final``) and
``out/<figure>.png``.

| name | setting |
|---|---|
| ``intro`` | n=5, m=2, importance 0.9^i, feature probability 1 … 0.05 (10 settings) |
| ``sparsity`` | n=20, m=5, importance 0.7^i, S in {0, .7, .9, .97, .99, .997, .999}; the linear model beside it |
| ``sparsity_large`` | n=80, m=20, importance 0.7^i, the same S |
| ``geometry`` | n=200, m=20, uniform importance, 1/(1-S) from 1 to 1000 (16 settings): dimensions per feature |
| ``phase`` | n=2, m=1: importance x density grid and an equal-importance sweep; learned vs numerically optimal |
| ``phase_3_2`` | n=3, m=2: the extra feature's importance x density, learned vs numerically optimal |
| ``correlated`` | n=4, m=2: two correlated pairs vs two anticorrelated pairs |
| ``privileged`` | n=10, m=5 with a ReLU hidden layer, importance 0.75^i: monosemantic vs polysemantic neurons |
| ``computation`` | absolute value, n=100, m=40, importance 0.8^i: neurons that compute in superposition |
| ``sae_recovery`` | sparse autoencoders on the n=5/m=2 and n=20/m=5 models' hidden activations: recovery of ``W_i`` |

Example (a few steps, to show the call)::

    >>> from mechscope.superposition.experiments import EXPERIMENTS, run_experiment
    >>> sorted(EXPERIMENTS)[:3]
    ['computation', 'correlated', 'geometry']
    >>> r = run_experiment("intro", steps=20, k=1, progress=False)
    >>> r.weights["W"].shape, len(r.instances)
    (torch.Size([10, 5, 2]), 10)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mechscope.errors import MechscopeError, unknown_name
from mechscope.superposition import metrics as M
from mechscope.superposition import phase as P
from mechscope.superposition.toy import ToyConfig, TrainedToy, best_of, importance_decay

SPARSITIES = (0.0, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999)


@dataclass
class ExperimentResult:
    """What an experiment measured: ``settings`` and ``summary`` (JSON-able), ``instances`` (one dict of
    metrics per trained instance), ``weights`` (tensors to save) and ``figures`` (name → matplotlib Figure)."""

    name: str
    settings: dict
    instances: list[dict]
    weights: dict[str, Tensor]
    figures: dict[str, Any] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    seconds: float = 0.0


def _r(x: Any, nd: int = 4) -> Any:
    if isinstance(x, Tensor):
        x = x.tolist()
    if isinstance(x, list):
        return [_r(v, nd) for v in x]
    return round(float(x), nd)


def _train(config: ToyConfig, importance: Tensor | float, p: Tensor | float, steps: int, k: int,
           progress: bool, lr: float = 1e-3) -> TrainedToy:
    return best_of(k, config, importance, p, steps=steps, batch_size=1024, lr=lr, progress=progress)


def _output_rows(W: Tensor, b: Tensor, labels: list[dict]) -> list[dict]:
    """Per-instance metrics of an output model (``W [I, n, m]``)."""
    norms, inter, dims = M.feature_norms(W), M.interference(W), M.feature_dimensionality(W)
    dpf = M.dimensions_per_feature(W)
    return [{**lab, "norms": _r(norms[i]), "interference": _r(inter[i]), "dimensionality": _r(dims[i]),
             "dimensions_per_feature": _r(dpf[i]), "bias": _r(b[i]),
             "represented": int((norms[i] > 0.5).sum()),
             "superposed": int(((norms[i] > 0.5) & (inter[i] > 0.1)).sum())} for i, lab in enumerate(labels)]


def _weights(trained: TrainedToy) -> tuple[Tensor, Tensor]:
    m = trained.model
    W = (m.W if hasattr(m, "W") else m.W1).detach().clone()
    return W, m.b_final.detach().clone()


# ---- the experiments ---------------------------------------------------------------------------------------


def intro(steps: int = 10_000, k: int = 3, progress: bool = True) -> ExperimentResult:
    n, m, count = 5, 2, 10
    p = 20.0 ** -torch.linspace(0, 1, count)
    t = _train(ToyConfig(n, m, count), importance_decay(n, 0.9), p[:, None], steps, k, progress)
    W, b = _weights(t)
    labels = [{"feature_probability": _r(v), "loss": _r(t.losses[i], 6)} for i, v in enumerate(p)]
    titles = [f"1-S = {float(v):.3g}" for v in p]
    return ExperimentResult("intro", {"n_features": n, "n_hidden": m, "importance": "0.9^i",
                                      "feature_probability": _r(p), "steps": steps, "best_of": k},
                            _output_rows(W, b, labels), {"W": W, "b_final": b},
                            {"norms": M.plot_norms(W, titles), "geometry": M.plot_geometry_2d(W, titles),
                             "gram": M.plot_gram(W, titles)})


def _sparsity(name: str, n: int, m: int, steps: int, k: int, progress: bool, linear: bool) -> ExperimentResult:
    p = torch.tensor([1.0 - s for s in SPARSITIES])
    imp = importance_decay(n, 0.7)
    t = _train(ToyConfig(n, m, len(p)), imp, p[:, None], steps, k, progress)
    W, b = _weights(t)
    labels = [{"model": "relu_output", "sparsity": s, "loss": _r(t.losses[i], 6)} for i, s in enumerate(SPARSITIES)]
    rows, weights = _output_rows(W, b, labels), {"W": W, "b_final": b}
    titles = [f"S = {s}" for s in SPARSITIES]
    figures = {"norms": M.plot_norms(W, titles), "gram": M.plot_gram(W, titles)}
    if linear:
        tl = _train(ToyConfig(n, m, len(p), model="linear"), imp, p[:, None], steps, k, progress)
        WL, bL = _weights(tl)
        rows += _output_rows(WL, bL, [{"model": "linear", "sparsity": s, "loss": _r(tl.losses[i], 6)}
                                      for i, s in enumerate(SPARSITIES)])
        weights.update({"W_linear": WL, "b_final_linear": bL})
        figures["norms_linear"] = M.plot_norms(WL, titles)
    return ExperimentResult(name, {"n_features": n, "n_hidden": m, "importance": "0.7^i",
                                   "sparsities": list(SPARSITIES), "steps": steps, "best_of": k},
                            rows, weights, figures)


def sparsity(steps: int = 10_000, k: int = 3, progress: bool = True) -> ExperimentResult:
    return _sparsity("sparsity", 20, 5, steps, k, progress, linear=True)


def sparsity_large(steps: int = 10_000, k: int = 1, progress: bool = True) -> ExperimentResult:
    return _sparsity("sparsity_large", 80, 20, steps, k, progress, linear=False)


def geometry(steps: int = 10_000, k: int = 1, progress: bool = True) -> ExperimentResult:
    n, m, count = 200, 20, 16
    inv = torch.logspace(0, 3, count)                                   # 1 / (1 - S) from 1 to 1000
    p = 1.0 / inv
    t = _train(ToyConfig(n, m, count), 1.0, p[:, None], steps, k, progress)
    W, b = _weights(t)
    rows = _output_rows(W, b, [{"feature_probability": _r(v, 6), "one_over_density": _r(1 / v, 3),
                                "loss": _r(t.losses[i], 6)} for i, v in enumerate(p)])
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(inv.numpy(), np.array([r["dimensions_per_feature"] for r in rows]), "o-", ms=3)
    for frac in (1.0, 0.5):
        ax.axhline(frac, ls=":", c="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("1 / (1 - S)")
    ax.set_ylabel("dimensions per feature  m / ||W||_F^2")
    ax.set_title(f"n={n}, m={m}, uniform importance", fontsize=9)
    return ExperimentResult("geometry", {"n_features": n, "n_hidden": m, "importance": 1.0,
                                         "feature_probability": _r(p, 6), "steps": steps, "best_of": k},
                            rows, {"W": W, "b_final": b},
                            {"dimensions_per_feature": fig, "dimensionality": M.plot_dimensionality(W, p)})


_phase_of = P.classify_2_1          # n=2, m=1 solutions: which features the single dimension holds (norm > 0.5), how


def _optimal_rows(rows: list[dict], sol: P.OptimalSolutions, phases: list[str]) -> None:
    for i, row in enumerate(rows):
        row.update({"optimal_phase": phases[i], "optimal_W": _r(sol.W[i]), "optimal_bias": _r(sol.b[i]),
                    "optimal_loss": _r(sol.loss[i], 6)})


def _compare(learned: list[str], optimal: list[str], symmetric: list[bool] | None) -> dict:
    """Agreement of the learned and optimal maps, and the shuffled-learned control's spread."""
    control = P.shuffled_agreement(learned, optimal, symmetric)
    return {"learned_vs_optimal": round(P.agreement(learned, optimal, symmetric), 4),
            "control_shuffled_mean": round(float(control.mean()), 4),
            "control_shuffled_p95": round(float(control.quantile(0.95)), 4), "cells": len(learned)}


def phase(steps: int = 10_000, k: int = 10, progress: bool = True, starts: int = 16) -> ExperimentResult:
    """n=2, m=1: the learned phase diagram (best of ``k`` seeds) beside the numerically optimal one (the exact
    expected loss minimised from ``starts`` random starts and the named candidates, ``phase.optimal_solutions``,
    ``min(steps, 300)`` Adam steps: 300 converge, fewer only serve quick smoke runs)
    and the paper's restricted analytic comparison, on a 9 x 9 grid of relative importance x density, plus the
    equal-importance density sweep of both."""
    rel = torch.logspace(-1, 1, 9)                                      # importance of feature 2 / feature 1
    dens = torch.logspace(-2, 0, 9)
    R, D = torch.meshgrid(rel, dens, indexing="ij")
    fine = torch.linspace(0.3, 0.9, 13)                                 # equal importance, density sweep
    imp = torch.cat([torch.stack([torch.ones(R.numel()), R.flatten()], 1), torch.ones(len(fine), 2)])
    p = torch.cat([D.flatten(), fine])[:, None].expand(-1, 2)
    t = _train(ToyConfig(2, 1, len(p)), imp, p, steps, k, progress)
    W, b = _weights(t)
    phases = _phase_of(W)
    sol = P.optimal_solutions(2, 1, imp, p.contiguous(), starts=starts, steps=min(steps, 300))
    opt_phases = P.classify_2_1(sol.W)
    restricted = P.restricted_2_1(imp, p[:, 0])
    rows = [{"relative_importance": _r(imp[i, 1]), "density": _r(p[i, 0]), "phase": phases[i],
             "W": _r(W[i, :, 0]), "bias": _r(b[i]), "loss": _r(t.losses[i], 6), "restricted_phase": restricted[i]}
            for i in range(len(p))]
    _optimal_rows(rows, sol, opt_phases)
    g = R.numel()
    sweep = [r["density"] for r in rows[g:]]
    symmetric = [bool(abs(float(v) - 1) < 1e-6) for v in imp[:g, 1]]
    boundary = {"analytic": round(4 / 7, 4), **P.transition(sweep, phases[g:]),
                "optimal": P.transition(sweep, opt_phases[g:]), "restricted": P.transition(sweep, restricted[g:])}
    agree = {**_compare(phases[:g], opt_phases[:g], symmetric),
             "restricted_vs_optimal": round(P.agreement(restricted[:g], opt_phases[:g], symmetric), 4)}
    fig = P.plot_phase_maps({f"learned (best of {k})": phases[:g], "numerically optimal": opt_phases[:g],
                             "restricted analytic": restricted[:g]}, P.PHASES_2_1, dens, rel,
                            ylabel="relative importance of feature 2", symmetric=symmetric, vline=4 / 7,
                            title="n=2, m=1 (dashed: analytic 4/7)")
    return ExperimentResult("phase", {"n_features": 2, "n_hidden": 1, "relative_importance": _r(rel),
                                      "densities": _r(dens), "fine_densities": _r(fine), "steps": steps,
                                      "best_of": k, "optimal_starts": starts}, rows,
                            {"W": W, "b_final": b, "W_optimal": sol.W, "b_optimal": sol.b}, {"phase_diagram": fig},
                            {"boundary": boundary, "agreement": agree})


def phase_3_2(steps: int = 10_000, k: int = 2, progress: bool = True, starts: int = 8) -> ExperimentResult:
    """n=3, m=2, the paper's second diagram: features 1 and 2 at importance 1, the extra feature 3's importance
    from 0.1 to 10 (8 values) x one density for all three from 0.01 to 1 (8 values), the extra feature's phase
    (not represented, dedicated dimension, superposition) learned (best of ``k``) and numerically optimal.
    ``k = 2`` keeps it and ``phase`` within ~200 s together; best of 4 (60 % more time) left 6 of 64 cells off the
    optimum instead of 8."""
    rel = torch.logspace(-1, 1, 8)                                      # no cell at exactly equal importance
    dens = torch.logspace(-2, 0, 8)
    R, D = torch.meshgrid(rel, dens, indexing="ij")
    imp = torch.stack([torch.ones(R.numel()), torch.ones(R.numel()), R.flatten()], 1)
    p = D.flatten()[:, None].expand(-1, 3).contiguous()
    t = _train(ToyConfig(3, 2, len(p)), imp, p, steps, k, progress)
    W, b = _weights(t)
    phases = P.classify_extra(W)
    sol = P.optimal_solutions(3, 2, imp, p, starts=starts, steps=min(steps, 300))
    opt_phases = P.classify_extra(sol.W)
    rows = _output_rows(W, b, [{"relative_importance": _r(imp[i, 2]), "density": _r(p[i, 0]),
                                "phase": phases[i], "loss": _r(t.losses[i], 6)} for i in range(len(p))])
    _optimal_rows(rows, sol, opt_phases)
    fig = P.plot_phase_maps({f"learned (best of {k})": phases, "numerically optimal": opt_phases}, P.EXTRA_PHASES,
                            dens, rel, ylabel="relative importance of feature 3", title="n=3, m=2: the extra feature")
    return ExperimentResult("phase_3_2", {"n_features": 3, "n_hidden": 2, "relative_importance": _r(rel),
                                          "densities": _r(dens), "steps": steps, "best_of": k,
                                          "optimal_starts": starts}, rows,
                            {"W": W, "b_final": b, "W_optimal": sol.W, "b_optimal": sol.b},
                            {"phase_diagram": fig}, {"agreement": _compare(phases, opt_phases, None)})


def correlated(steps: int = 10_000, k: int = 3, progress: bool = True) -> ExperimentResult:
    densities = (0.05, 0.1)
    results, rows = {}, []
    for kind, cfg in (("correlated", ToyConfig(4, 2, len(densities), n_correlated_pairs=2)),
                      ("anticorrelated", ToyConfig(4, 2, len(densities), n_anticorrelated_pairs=2))):
        t = _train(cfg, 1.0, torch.tensor(densities)[:, None], steps, k, progress)
        W, b = _weights(t)
        results[kind] = (W, b)
        unit = W / W.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        for i, d in enumerate(densities):
            within = [float(unit[i, 2 * q] @ unit[i, 2 * q + 1]) for q in range(2)]
            rows.append({"pairs": kind, "density": d, "cosine_within_pairs": _r(within),
                         "norms": _r(M.feature_norms(W[i])), "loss": _r(t.losses[i], 6)})
    W = torch.cat([results["correlated"][0], results["anticorrelated"][0]])
    b = torch.cat([results["correlated"][1], results["anticorrelated"][1]])
    titles = [f"{kind} {d}" for kind in ("correlated", "anticorrelated") for d in densities]
    return ExperimentResult("correlated", {"n_features": 4, "n_hidden": 2, "importance": 1.0,
                                           "densities": list(densities), "steps": steps, "best_of": k},
                            rows, {"W": W, "b_final": b}, {"geometry": M.plot_geometry_2d(W, titles)})


def privileged(steps: int = 10_000, k: int = 3, progress: bool = True) -> ExperimentResult:
    n, m = 10, 5
    p = torch.tensor([1.0 - s for s in SPARSITIES])
    t = _train(ToyConfig(n, m, len(p), model="relu_hidden"), importance_decay(n, 0.75), p[:, None], steps, k,
               progress)
    W, b = _weights(t)
    kinds = M.neuron_kinds(W)
    rows = [{"sparsity": s, "loss": _r(t.losses[i], 6), "norms": _r(M.feature_norms(W[i])),
             **{kind: int(v[i]) for kind, v in kinds.items()}} for i, s in enumerate(SPARSITIES)]
    return ExperimentResult("privileged", {"n_features": n, "n_hidden": m, "importance": "0.75^i",
                                           "sparsities": list(SPARSITIES), "steps": steps, "best_of": k},
                            rows, {"W": W, "b_final": b},
                            {"neuron_weights": _neuron_figure(W, [f"S = {s}" for s in SPARSITIES])})


def _neuron_figure(W: Tensor, titles: list[str]):
    """Each instance's neuron-by-feature weights (``metrics.neuron_weights``) as a heatmap."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.8 * len(titles), 2.4))
    nw = M.neuron_weights(W)
    top = float(nw.abs().max()) or 1.0
    for i, title in enumerate(titles):
        ax = fig.add_subplot(1, len(titles), i + 1)
        ax.imshow(nw[i].numpy(), cmap="RdBu_r", vmin=-top, vmax=top, aspect="auto")
        ax.set_title(title, fontsize=7)
        ax.set_xlabel("feature", fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.axes[0].set_ylabel("neuron", fontsize=7)
    return fig


def computation(steps: int = 10_000, k: int = 1, progress: bool = True) -> ExperimentResult:
    n, m = 100, 40
    densities = (1.0, 0.1, 0.01)
    t = _train(ToyConfig(n, m, len(densities), model="abs"), importance_decay(n, 0.8),
               torch.tensor(densities)[:, None], steps, k, progress)
    W1 = t.model.W1.detach().clone()
    kinds = M.neuron_kinds(W1)
    rows = [{"density": d, "loss": _r(t.losses[i], 6), "features_with_weight": int((W1[i].norm(dim=-1) > 0.5).sum()),
             **{kind: int(v[i]) for kind, v in kinds.items()}} for i, d in enumerate(densities)]
    return ExperimentResult("computation", {"n_features": n, "n_hidden": m, "importance": "0.8^i",
                                            "densities": list(densities), "steps": steps, "best_of": k},
                            rows, {"W": W1, "W2": t.model.W2.detach().clone(),
                                   "b_final": t.model.b_final.detach().clone()},
                            {"neuron_weights": _neuron_figure(W1[:, :20], [f"1-S = {d}" for d in densities])})


TOY_SAE_LR = 3e-3            # the SAE recipe for toy models' hidden activations (sae_recovery, ``sae toy``)
TOY_SAE_RESAMPLE_EVERY = 500
TOY_SAE_DEAD_AFTER = 250


def toy_sae_config(d_in: int, n_latents: int, *, kind: str = "relu", l1: float = 0.3, k: int = 1,
                   steps: int = 3000):
    """The ``sae.SAEConfig`` used on toy models' hidden activations (``sae_recovery`` and ``mechscope sae toy``):
    Adam at 3e-3, dead latents (silent 250 steps) resampled every 500 steps.

    >>> c = toy_sae_config(2, 10)
    >>> (c.lr, c.resample_every, c.dead_after, c.kind, c.l1)
    (0.003, 500, 250, 'relu', 0.3)
    """
    from mechscope.dictionary.sae import SAEConfig

    return SAEConfig(d_in=d_in, n_latents=n_latents, kind=kind, l1=l1, k=k, lr=TOY_SAE_LR, steps=steps,
                     resample_every=TOY_SAE_RESAMPLE_EVERY, dead_after=TOY_SAE_DEAD_AFTER)


def sae_toy(out_dir: str | os.PathLike, *, features: int = 5, hidden: int = 2, density: float = 0.05,
            decay: float = 0.9, latents: int = 10, kind: str = "relu", l1: float = 0.3, k: int = 1,
            steps: int = 3000, toy_steps: int = 10_000, progress: bool = True) -> dict[str, Any]:
    """``mechscope sae toy``: train a toy model (``n=features``, ``m=hidden``, importance ``decay**i``, best of 3
    seeds), then an SAE (``toy_sae_config``) on its hidden activations; write ``out_dir/sae.safetensors`` (the
    SAE's weights and ``W_toy [features, hidden]``) and ``out_dir/results.json``.  Returns the JSON payload
    (``mean_max_cosine``, ``per_feature``, ``excluded_features``, ...).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out:
    ...     r = sae_toy(out, toy_steps=20, steps=5, progress=False)
    >>> 0 <= r["mean_max_cosine"] <= 1, r["sae"]["n_latents"]
    (True, 10)
    """
    from safetensors.torch import save

    from mechscope.artefacts import atomic_write_bytes, atomic_write_json

    toy = best_of(3, ToyConfig(features, hidden, 1), importance_decay(features, decay), density, steps=toy_steps,
                  progress=progress)
    W = toy.model.W.detach()[0]
    config = toy_sae_config(hidden, latents, kind=kind, l1=l1, k=k, steps=steps)
    trained, score = sae_on_toy(toy, 0, config, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "sae.safetensors", save({k_: v.detach().contiguous() for k_, v in
                                                      trained.sae.state_dict().items()} | {"W_toy": W.contiguous()}))
    payload = {"toy": {"n_features": features, "n_hidden": hidden, "density": density, "importance": f"{decay}^i",
                       "loss": float(toy.losses[0])},
               "sae": {"kind": kind, "n_latents": latents, "l1": l1, "k": k, "steps": steps},
               "mean_max_cosine": score.mean_max_cosine, "per_feature": score.per_feature.tolist(),
               "excluded_features": score.excluded, "final": trained.log[-1]}
    atomic_write_json(out / "results.json", payload)
    return payload


def sae_on_toy(trained: TrainedToy, instance: int, config, *, progress: bool = False):
    """A sparse autoencoder (``sae.SAEConfig``) trained on one instance's hidden activations, streamed fresh each
    step at that instance's feature probability, and its ``recovery_score`` against the instance's true feature
    directions ``W_i`` (features with norm below 0.5, i.e. not represented, excluded).
    Returns ``(TrainedSAE, RecoveryScore)``."""
    from mechscope.dictionary.sae import recovery_score, train_sae
    from mechscope.superposition.toy import generate_batch

    def batch(step: int, g: torch.Generator) -> Tensor:
        x = generate_batch(trained.config, config.batch_size, trained.feature_probability, generator=g)
        with torch.no_grad():
            return trained.model.hidden(x)[:, instance]

    sae = train_sae(batch, config, progress=progress)
    return sae, recovery_score(sae.sae.W_dec.detach(), _weights(trained)[0][instance], min_norm=0.5)


def sae_recovery(steps: int = 10_000, k: int = 3, progress: bool = True, sae_steps: int = 3000) -> ExperimentResult:
    """Sparse autoencoders on toy models' hidden activations (streamed fresh each step): how well the decoder
    recovers the true feature directions ``W_i`` (mean max cosine), by feature density and dictionary size."""
    rows, weights = [], {}
    for n, m, densities, sizes in ((5, 2, (1.0, 0.3, 0.1, 0.05, 0.02), (5, 10, 20)), (20, 5, (0.1, 0.03, 0.01), (20, 40))):
        cfg = ToyConfig(n, m, len(densities))
        p = torch.tensor(densities)
        t = _train(cfg, importance_decay(n, 0.9 if n == 5 else 0.7), p[:, None], steps, k, progress)
        weights[f"W_n{n}_m{m}"] = _weights(t)[0]
        for i, d in enumerate(densities):
            for size in sizes:
                sae, score = sae_on_toy(t, i, toy_sae_config(m, size, steps=sae_steps))
                rows.append({"n_features": n, "n_hidden": m, "density": d, "n_latents": size,
                             "mean_max_cosine": _r(score.mean_max_cosine), "excluded_features": score.excluded,
                             "per_feature": _r(score.per_feature), "final": {k_: _r(v) for k_, v in sae.log[-1].items()}})
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    for (n, size) in sorted({(r["n_features"], r["n_latents"]) for r in rows}):
        sel = [r for r in rows if r["n_features"] == n and r["n_latents"] == size]
        ax.plot([r["density"] for r in sel], [r["mean_max_cosine"] for r in sel], "o-", ms=3,
                label=f"n={n}, {size} latents")
    ax.set_xscale("log")
    ax.set_xlabel("feature density 1 - S")
    ax.set_ylabel("mean max cosine (decoder vs W_i)")
    ax.legend(fontsize=6)
    return ExperimentResult("sae_recovery", {"toys": "n=5/m=2 (importance 0.9^i), n=20/m=5 (0.7^i)",
                                             "sae": {"kind": "relu", "l1": 0.3, "lr": TOY_SAE_LR, "steps": sae_steps},
                                             "steps": steps, "best_of": k, "min_norm": 0.5},
                            rows, weights, {"recovery": fig})


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    run: Callable[..., ExperimentResult]


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("intro", "n=5, m=2, importance 0.9^i, sparsity sweep: dropped features, antipodal pairs, pentagon",
               intro),
    Experiment("sparsity", "n=20, m=5, importance 0.7^i, S from 0 to 0.999, with the linear model beside it",
               sparsity),
    Experiment("sparsity_large", "n=80, m=20, importance 0.7^i, S from 0 to 0.999", sparsity_large),
    Experiment("geometry", "n=200, m=20, uniform importance: dimensions per feature against 1/(1-S)", geometry),
    Experiment("phase", "n=2, m=1 phase diagram (relative importance x density), learned vs numerically optimal "
                        "vs the paper's restricted analytic comparison, and the equal-importance boundary", phase),
    Experiment("phase_3_2", "n=3, m=2 phase diagram of the extra feature (its importance x density), learned vs "
                            "numerically optimal", phase_3_2),
    Experiment("correlated", "n=4, m=2: correlated pairs go orthogonal, anticorrelated pairs antipodal",
               correlated),
    Experiment("privileged", "n=10, m=5 with a ReLU hidden layer: monosemantic and polysemantic neurons",
               privileged),
    Experiment("computation", "|x| computed by n=100 features in m=40 neurons, importance 0.8^i", computation),
    Experiment("sae_recovery", "sparse autoencoders on toy models' hidden activations: recovery of the true "
                               "feature directions by density and dictionary size", sae_recovery),
)}


def run_experiment(name: str, out: str | os.PathLike | None = None, *, steps: int | None = None,
                   k: int | None = None, progress: bool = True) -> ExperimentResult:
    """Run the experiment ``name`` (``steps`` and best-of ``k`` default to the experiment's own); with
    ``out``, write ``results.json``, ``weights.safetensors`` and one PNG per figure there (atomically)."""
    if name not in EXPERIMENTS:
        raise unknown_name("experiment", name, list(EXPERIMENTS), where="mechscope superposition")
    if steps is not None and steps < 1:
        raise MechscopeError(f"steps must be positive, got {steps}")
    kwargs = {k_: v for k_, v in (("steps", steps), ("k", k)) if v is not None}
    start = time.perf_counter()
    result = EXPERIMENTS[name].run(progress=progress, **kwargs)
    result.seconds = round(time.perf_counter() - start, 1)
    if out is not None:
        save_result(result, out)
    return result


def save_result(result: ExperimentResult, out: str | os.PathLike) -> Path:
    """``results.json`` (settings, summary, per-instance metrics, seconds), ``weights.safetensors``, PNGs."""
    import io

    from safetensors.torch import save

    from mechscope.artefacts import atomic_write_bytes, atomic_write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"experiment": result.name, "settings": result.settings, "summary": result.summary,
               "seconds": result.seconds, "figures": [f"{k}.png" for k in result.figures],
               "instances": result.instances}
    atomic_write_bytes(out / "weights.safetensors",
                       save({k: v.detach().contiguous().cpu() for k, v in result.weights.items()}))
    for key, fig in result.figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        atomic_write_bytes(out / f"{key}.png", buf.getvalue())
    atomic_write_json(out / "results.json", payload)
    return out
