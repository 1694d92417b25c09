"""Claim (Weight Banding, Petrov et al., Distill 2021): the final convolutional layer of a vision model that ends
in global average pooling has banded weights — spatial kernels nearly constant along one axis — unlike every
earlier layer.  Checked on the shapes organism, whose mixed4b feeds ``avgpool0`` (global average pooling).

Measured per kernel (``weights.kernel_banding``): a kernel is banded when the share of its variance explained by
its row means minus that explained by its column means is at least ``BANDED`` (horizontal) or at most
``-BANDED`` (vertical).  Per convolution with kernels larger than 1 x 1: the share of its kernels banded either
way, and the same share in the same convolution of the untrained network (random weights, seed 0: the level
kernels of that size reach by chance).  A layer's **excess** is the largest (trained − untrained) share over its
convolutions.  Kernels of the organism at 64 px: ``conv2d0`` 5x5 (on the 64x64 input), ``conv2d2`` 3x3 (32x32
map), and in each mixed block a 3x3 and a 5x5 branch; mixed3a/3b work on 16x16 maps, mixed4a/4b on 8x8 maps
(mixed4b's output, 8x8, is what global average pooling reads).

Criterion, stated before the run: mixed4b's excess is at least ``MIN_EXCESS`` and above every earlier layer's.
"""

from __future__ import annotations

from pathlib import Path

from mechscope.plots import new_figure, save_figure
from mechscope.reproduce.claims import Claim, Result, fmt
from mechscope.vision.circuits.banding import BANDED, excess, layer_banding
from mechscope.vision.circuits.weights import banding_plot
from mechscope.zoo.registry import load

FINAL = "mixed4b"
MIN_EXCESS = 0.1   # banded share above the untrained net's (the control), a stated margin of 10 points
__all__ = ["CLAIM", "excess", "layer_banding"]   # the measures live in vision.circuits.banding


def check(out: Path) -> Result:
    net = load("shapes", device="cpu")
    trained, untrained = layer_banding(net), layer_banding(load("shapes", weights="random", seed=0, device="cpu"))
    by_layer = excess(trained, untrained)
    final = by_layer[FINAL]
    earlier = max(v for b, v in by_layer.items() if b != FINAL)

    convs = [k for k in trained if k.split(".")[0] in (FINAL, "mixed3b")]
    fig, axes = new_figure(len(convs), 1, figsize=(8, 1.1 * len(convs)))
    for ax, name in zip(axes, convs, strict=True):
        banding_plot(net.get_submodule(name).weight, ax)
        ax.set_ylabel(name, fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "weight_banding.png", dpi=80, tight=False)

    numbers = {"final_layer": FINAL, "banded_threshold": BANDED, "final_excess": final,
               "strongest_earlier_excess": earlier, "excess_per_layer": by_layer,
               "convs": trained, "untrained_convs": untrained}
    passed = final >= MIN_EXCESS and final > earlier
    final_untrained = {k: v["banded"] for k, v in untrained.items() if k.split(".")[0] == FINAL}
    summary = (f"{FINAL} banded share above untrained {fmt(final)} (needs >= {MIN_EXCESS:g}) vs strongest earlier "
               f"layer {fmt(earlier)}; untrained {FINAL} banded: "
               + ", ".join(fmt(v) for v in final_untrained.values()))
    controls = {"untrained_final_banded": final_untrained, "strongest_earlier_excess": earlier}
    return Result(numbers, passed, ["weight_banding.png"], controls=controls, summary=summary, note=
                  "excess: share of a conv's kernels banded either way minus the share in the same conv untrained "
                  "(untrained_convs, the chance level for that kernel size); pooled_score: the old signed score "
                  "pooled over kernels, for comparison. The shapes world has no up or down: shapes, curves, "
                  "boundaries and background gradients and stripes are all at uniformly random angles, and no "
                  "task depends on vertical position. The paper relates banding to global average pooling "
                  "discarding large-scale spatial structure, which photographs have (sky above, ground below) and "
                  "this world does not; a failure here is consistent with that account but does not test it on this "
                  "organism. The layout world (sky above, ground below) and the pooling ablations are tested on "
                  "the banding-* organisms (reproduce/banding_ablations.py). mixed4b's map is 8x8 at 64 px; its kernels are 3x3 and 5x5.")


CLAIM = Claim(
    name="final-layer-banding",
    paper="Weight Banding (Petrov et al., Distill 2021)",
    statement="the organism's last conv layer (mixed4b, before global average pooling) shows weight banding",
    criterion=f"share of mixed4b's kernels banded (per-kernel row-minus-column variance share |score| >= {BANDED}) "
              f"exceeds the untrained network's by >= {MIN_EXCESS}, and by more than in every earlier layer",
    check=check,
)
