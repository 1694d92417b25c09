"""Claim (Curve Detectors, Cammarata et al. 2020, "feature use"): the network uses its curve detectors —
removing them costs the accuracy of the task that needs curves.  Checked on the shapes organism's mixed3b.

Stated before looking at results:

* the units: mixed3b's curve detectors (``radial_tuning_curve`` + ``curve_detectors``, default criteria);
* the ablation: those channels of mixed3b set to 0 (``zero``) or to their per-position mean over
  ``MEAN_IMAGES`` training-world images (``mean``), by forward hook (``vision.circuits.ablation``);
* the measure: the drop of each task's accuracy (shape, curve, boundary, colour) on the card's held-out world
  (``images`` items), unablated minus ablated;
* the control: ``draws`` random sets of the same size drawn from mixed3b's *other* units (seeded), ablated the
  same way;
* the criterion: in both modes, the curve task's drop with the detectors ablated is strictly larger than with
  at least ``MIN_SHARE`` of the random sets.  The other tasks' drops are reported, not judged.

The unablated network is run once up to mixed3b; each ablation applies ``ablated`` (the function behind
``ablate_units``' hook) to that cached activation and reruns the layers after it (``_tail``).  Both shortcuts
are checked before use: the split forward against ``forward()``, and the cached ablation of the detectors
against the same ablation by forward hook on the full model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mechscope.data.shapes import IGNORE, TASKS, ShapesDataset
from mechscope.errors import MechscopeError
from mechscope.plots import new_figure, save_figure
from mechscope.reproduce.claims import Claim, Result
from mechscope.vision.circuits.ablation import ablate_units, ablated, channel_means
from mechscope.vision.families.tuning import curve_detectors, radial_tuning_curve
from mechscope.zoo.organisms.shapes_net import INPUT_MEAN, INPUT_STD, ShapesNet, split_logits
from mechscope.zoo.registry import bundled_card, load

LAYER, TASK = "mixed3b", "curve"
MODES = ("zero", "mean")
MIN_SHARE, MEAN_IMAGES = 0.95, 256


def _head(net: ShapesNet, x: torch.Tensor) -> torch.Tensor:
    """ShapesNet's forward up to mixed3b: ``[B, 3, H, W]`` -> ``[B, 208, h, w]``."""
    x = (x - INPUT_MEAN) / INPUT_STD
    return net.mixed3b(net.mixed3a(net.maxpool1(net.conv2d2(net.conv2d1(net.conv2d0(x))))))


def _tail(net: ShapesNet, b: torch.Tensor) -> torch.Tensor:
    """ShapesNet's forward after mixed3b: ``[B, 208, h, w]`` -> ``[B, 61]`` logits."""
    x = net.mixed4b(net.mixed4a(net.maxpool4(b)))
    return net.softmax2_pre_activation(net.avgpool0(x).flatten(1))


def _accuracy(logits: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    acc = {}
    for task, out in split_logits(logits).items():
        valid = labels[task] != IGNORE
        acc[task] = float((out.argmax(1)[valid] == labels[task][valid]).double().mean()) if valid.any() else 0.0
    return acc


@torch.no_grad()
def check(out: Path, images: int = 500, draws: int = 20, n_orientations: int = 180, seed: int = 0,
          mean_images: int = MEAN_IMAGES) -> Result:
    net = load("shapes", device="cpu").eval()
    found = curve_detectors(radial_tuning_curve(net, LAYER, n_orientations=n_orientations, progress=False))
    detectors = found.units
    width = net.layer_table[LAYER].channels
    others = torch.tensor([c for c in range(width) if c not in set(detectors)])
    if not detectors or len(others) < len(detectors):
        raise MechscopeError(f"{len(detectors)} curve detectors in {LAYER}: too few or too many for the control")
    gen = torch.Generator().manual_seed(seed)
    random_sets = [others[torch.randperm(len(others), generator=gen)[:len(detectors)]].tolist()
                   for _ in range(draws)]

    card = bundled_card("shapes")
    x, labels = ShapesDataset(images, seed=card["held_out"]["world_seed"]).sample(range(images))
    train_x, _ = ShapesDataset(mean_images, seed=card["recipe"]["seed"]).sample(range(mean_images))
    means = channel_means(net, LAYER, [train_x])
    b = _head(net, x)
    base_logits = _tail(net, b)
    full = net(x)
    with ablate_units(net, LAYER, detectors, mode="mean", means=means):
        hooked = net(x)
    if not (torch.allclose(base_logits, full, atol=1e-4, rtol=1e-4) and torch.allclose(
            _tail(net, ablated(b, detectors, "mean", means)), hooked, atol=1e-4, rtol=1e-4)):
        raise MechscopeError("the split forward pass of ShapesNet no longer matches its forward(); update _head/_tail")
    base = _accuracy(base_logits, labels)

    def drops(channels: list[int], mode: str) -> dict[str, float]:
        acc = _accuracy(_tail(net, ablated(b, channels, mode, means)), labels)
        return {t: base[t] - acc[t] for t in TASKS}

    per_mode: dict[str, dict] = {}
    for mode in MODES:
        det = drops(detectors, mode)
        rand = [drops(s, mode) for s in random_sets]
        r = torch.tensor([d[TASK] for d in rand], dtype=torch.float64)
        per_mode[mode] = {
            "detector_drop": {t: round(v, 4) for t, v in det.items()},
            "random_drop_median": {t: round(float(torch.tensor([d[t] for d in rand]).median()), 4) for t in TASKS},
            "random_drop_max": {t: round(max(d[t] for d in rand), 4) for t in TASKS},
            "share_random_below_detectors": round(float((r < det[TASK]).double().mean()), 3),
            "p_value": round(float((1 + (r >= det[TASK]).sum()) / (1 + len(r))), 4),
            "_random": rand,
        }

    fig, axes = new_figure(1, len(MODES), figsize=(4.5 * len(MODES), 3.2), sharey=True)
    for ax, mode in zip(axes, MODES, strict=True):
        for i, t in enumerate(TASKS):
            ax.scatter([i] * draws, [d[t] for d in per_mode[mode]["_random"]], s=9, c="0.6",
                       label="random sets" if i == 0 else None)
            ax.scatter([i], [per_mode[mode]["detector_drop"][t]], s=40, c="tab:red", marker="D",
                       label="curve detectors" if i == 0 else None)
        ax.axhline(0, lw=0.5, c="k")
        ax.set_xticks(range(len(TASKS)), list(TASKS))
        ax.set_title(f"{mode} ablation of {len(detectors)} {LAYER} units")
    axes[0].set_ylabel("held-out accuracy drop")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "feature_use_ablation.png", dpi=80, tight=False)

    share = {m: per_mode[m]["share_random_below_detectors"] for m in MODES}
    passed = all(share[m] >= MIN_SHARE for m in MODES)
    numbers = {
        "layer": LAYER, "curve_detectors": len(detectors), "other_units": len(others), "random_draws": draws,
        "held_out_images": images, "baseline_accuracy": {t: round(v, 4) for t, v in base.items()},
        **{mode: {k: v for k, v in per_mode[mode].items() if not k.startswith("_")} for mode in MODES},
    }
    return Result(numbers, passed, ["feature_use_ablation.png"],
                  f"Accuracy drop = unablated - ablated accuracy on {images} held-out images (world seed "
                  f"{card['held_out']['world_seed']}); the curve task applies to "
                  f"{int((labels[TASK] != IGNORE).sum())} of them. Mean ablation uses per-position means over "
                  f"{mean_images} training-world images. Random sets: {draws} seeded draws of "
                  f"{len(detectors)} of the {len(others)} non-detector units. Other tasks are reported, not judged "
                  f"(the detectors' ablation is not specific to the curve task if it costs shape as much: shape "
                  f"drop zero {per_mode['zero']['detector_drop']['shape']:.3f}, mean "
                  f"{per_mode['mean']['detector_drop']['shape']:.3f}).")


CLAIM = Claim(
    name="ablating-curve-detectors",
    paper="Curve Detectors (Cammarata et al., Distill 2020)",
    statement="ablating mixed3b's curve detectors costs the shapes organism's curve task more accuracy than "
              "ablating random sets of its other units of the same size",
    criterion=f"in both zero and mean ablation, the curve task's held-out accuracy drops more with the curve "
              f"detectors ablated than with >= {MIN_SHARE:.0%} of >= 20 seeded random same-size sets of "
              f"non-detector units",
    check=check,
)
