"""Claim (Weight Banding, Petrov et al., Distill 2021): the final convolutional layer of a vision model that ends
in global average pooling has banded weights — spatial kernels nearly constant along one axis — unlike every
earlier layer.  Checked on the shapes organism, whose mixed4b feeds ``avgpool0`` (global average pooling).

Banding of a layer: ``weights.banding`` over every spatial kernel of its convolutions with kernels larger than
1 x 1 (``score`` = share of the variance along rows minus along columns, +1 pure horizontal bands, -1 pure
vertical).  A layer's strength is the largest ``|score|`` of its convolutions.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from mechscope.plots import new_figure, save_figure
from mechscope.reproduce.claims import Claim, Result
from mechscope.vision.circuits.weights import banding, banding_plot
from mechscope.zoo.registry import load

FINAL = "mixed4b"
MIN_STRENGTH = 0.15


def layer_banding(net: nn.Module) -> dict[str, dict[str, float]]:
    """``{conv module path: {"horizontal", "vertical", "score"}}`` for every conv with kernels larger than 1x1."""
    out = {}
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d) and max(module.kernel_size) > 1:
            b = banding(module.weight)
            out[name] = {"horizontal": round(b.horizontal, 3), "vertical": round(b.vertical, 3),
                         "score": round(b.score, 3)}
    return out


def _strength(rows: dict[str, dict[str, float]], block: str) -> float:
    return max(abs(v["score"]) for k, v in rows.items() if k.split(".")[0] == block)


def check(out: Path) -> Result:
    net = load("shapes", device="cpu")
    trained, untrained = layer_banding(net), layer_banding(load("shapes", weights="random", seed=0, device="cpu"))
    blocks = list(dict.fromkeys(k.split(".")[0] for k in trained))
    strength = {b: _strength(trained, b) for b in blocks}
    earlier = max(v for b, v in strength.items() if b != FINAL)
    final = strength[FINAL]

    convs = [k for k in trained if k.split(".")[0] in (FINAL, "mixed3b")]
    fig, axes = new_figure(len(convs), 1, figsize=(8, 1.1 * len(convs)))
    for ax, name in zip(axes, convs, strict=True):
        banding_plot(net.get_submodule(name).weight, ax)
        ax.set_ylabel(name, fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "weight_banding.png", dpi=80, tight=False)

    numbers = {"final_layer": FINAL, "final_strength": final, "strongest_earlier": earlier,
               "strongest_untrained": max(abs(v["score"]) for v in untrained.values()),
               "per_layer_strength": strength, "convs": trained}
    passed = final >= MIN_STRENGTH and final > earlier
    return Result(numbers, passed, ["weight_banding.png"],
                  "The shapes world has no up or down: shapes, curves, boundaries and background gradients and "
                  "stripes are all at uniformly random angles, and no task depends on vertical position. The "
                  "paper relates banding to global average pooling discarding large-scale spatial structure, "
                  "which photographs have (sky above, ground below) and this world does not; a failure here is "
                  "consistent with that account but does not test it: the paper's ablations (flatten instead of "
                  "pooling, a world with an up and a down) have not been run on the organism. "
                  "mixed4b's map is 4x4 at 64 px.")


CLAIM = Claim(
    name="final-layer-banding",
    paper="Weight Banding (Petrov et al., Distill 2021)",
    statement="the organism's last conv layer (mixed4b, before global average pooling) shows weight banding",
    criterion=f"mixed4b's banding strength |horizontal - vertical| >= {MIN_STRENGTH} and above every earlier "
              "layer's",
    check=check,
)
