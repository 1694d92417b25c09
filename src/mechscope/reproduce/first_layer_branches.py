"""Claims (Branch Specialization, Voss et al., Distill 2021): AlexNet's first layer, split over two GPUs, had one
branch learn mostly black-and-white kernels and the other mostly colour ones; and across vision models the
largest direction of variation of the first layer's kernels is colour, the second spatial frequency.  Checked on
the branched organisms (``zoo.organisms.branched_net``): the same shared RGB first layer (24 units, 7×7) whose
later layers are split into 2 or 3 branches (``branched-2``, ``branched-3``) or not split (``branched-1``),
trained briefly by one recipe on the shapes world, where half the objects are coloured and a head must say
which.

Measurements: each first-layer unit's colour score (``first_layer.kernel_colour_scores``: share of its kernel's
energy outside the grey direction of each pixel); for a branched net, the **split** = the mean colour score of
the most colourful branch minus that of the least colourful (``branch_colour_split``; branches are the
contiguous channel blocks each grouped convolution reads).  For the unbranched net, ``first_layer_svd`` of the
flattened kernels ``[24, 147]`` (not centred) and each component's colour score and frequency score (share of
the DFT energy above half the Nyquist frequency).

Criteria, stated before any measurement (the nets were still training when this was written):

* ``first-layer-branches-split-colour``: for both ``groups`` = 2 and 3, the trained net's split exceeds at
  least 95 % of ``DRAWS`` (1000) random partitions of the same 24 units into branches of the same sizes
  (percentile >= 0.95), **and** exceeds the split of the untrained net of the same architecture (PyTorch's
  default init, seed 0).  Controls computed and reported: the untrained nets' split and percentile, the random
  partitions' mean and 95th percentile.
* ``first-layer-svd-colour-then-frequency``: among the top ``TOP`` (4) components of the unbranched trained
  net, component 1 has the largest colour score, and component 2 has the largest frequency score of components
  2-4.  Control: the untrained unbranched net (seed 0) must NOT show the same order, or the claim fails as
  "cannot be told apart"; the share of ``SEEDS`` (20) untrained initialisations showing the order is reported
  as its chance rate.
"""

from __future__ import annotations

import functools
from pathlib import Path

from mechscope.plots import new_figure, save_figure
from mechscope.reproduce.claims import Claim, Result, fmt
from mechscope.vision.families.branches import first_layer_svd
from mechscope.vision.families.first_layer import branch_colour_split, svd_order
from mechscope.vision.families.first_layer_report import draw_components, first_conv
from mechscope.zoo.registry import load

PAPER = "Branch Specialization (Voss et al., Distill 2021)"
# PERCENTILE (0.95): the split must beat 95% of random partitions of the same units (the control, a one-sided
# 5% level) and the untrained nets' split.
DRAWS, PERCENTILE, TOP, SEEDS = 1000, 0.95, 4, 20
BRANCHED = (2, 3)


@functools.lru_cache(maxsize=None)
def _weight(groups: int, trained: bool, seed: int = 0):
    """First-layer weights ``[24, 3, 7, 7]`` of ``branched-<groups>`` (trained, or untrained with ``seed``)."""
    net = load(f"branched-{groups}", device="cpu") if trained else \
        load(f"branched-{groups}", weights="random", seed=seed, device="cpu")
    return first_conv(net)[1].weight.detach().clone()


def check_split(out: Path, draws: int = DRAWS) -> Result:
    numbers: dict = {"draws": draws, "percentile_needed": PERCENTILE}
    passed, controls, parts = True, {}, []
    fig, axes = new_figure(1, len(BRANCHED), figsize=(3.2 * len(BRANCHED), 2.6), squeeze=False)
    for ax, g in zip(axes[0], BRANCHED):
        trained = branch_colour_split(_weight(g, True), g, draws=draws)
        untrained = branch_colour_split(_weight(g, False), g, draws=draws)
        ok = trained.percentile >= PERCENTILE and trained.split > untrained.split
        passed = passed and ok
        numbers[f"groups_{g}"] = {"trained": {k: v for k, v in trained.as_dict().items() if k != "unit_scores"},
                                  "untrained_control": {k: v for k, v in untrained.as_dict().items()
                                                        if k != "unit_scores"},
                                  "passes": ok}
        p95 = numbers[f"groups_{g}"]["trained"]["random_partitions"]["p95"]
        controls[f"groups_{g}"] = {"untrained_split": round(untrained.split, 4), "random_partitions_p95": p95}
        parts.append(f"{g} branches: split {fmt(trained.split)} vs random p95 "
                     f"{fmt(p95)} (percentile {fmt(trained.percentile)}), "
                     f"untrained {fmt(untrained.split)}")
        ax.hist(trained.null_splits.numpy(), bins=30, color="0.7", label="random partitions (trained)")
        ax.axvline(trained.split, color="C3", label=f"trained {trained.split:.2f}")
        ax.axvline(untrained.split, color="C0", ls="--", label=f"untrained {untrained.split:.2f}")
        ax.set_title(f"branched-{g}: colour split, percentile {trained.percentile:.3f}", fontsize=7)
        ax.set_xlabel("most - least colourful branch (mean colour score)", fontsize=6)
        ax.legend(fontsize=5)
    fig.tight_layout()
    save_figure(fig, out / "first_layer_branches.png", dpi=80, tight=False)
    return Result(numbers, passed, ["first_layer_branches.png"], controls=controls, summary="; ".join(parts), note=
                  "Colour score: share of a kernel's energy outside the grey direction. Split: mean score of the "
                  "most minus the least colourful branch; percentile: share of random equal-size partitions of the "
                  "same 24 units with a lower split. Controls: the untrained nets (seed 0) and the random "
                  "partitions.")


def check_svd(out: Path, seeds: int = SEEDS) -> Result:
    trained = first_layer_svd(_weight(1, True))
    order = svd_order(trained, TOP)
    control = svd_order(first_layer_svd(_weight(1, False, 0)), TOP)
    chance = [svd_order(first_layer_svd(_weight(1, False, s)), TOP).holds for s in range(seeds)]
    fig, axes = new_figure(1, TOP, figsize=(1.3 * TOP, 1.7))
    draw_components(list(axes), trained, TOP)
    fig.suptitle("branched-1 conv1: top SVD components", fontsize=7)
    save_figure(fig, out / "first_layer_svd.png", dpi=100)
    init = _weight(1, False, 0)   # the recipe's seed-0 initialisation is exactly this untrained net
    numbers = {"top": TOP, "trained": order.as_dict(), "untrained_control": control.as_dict(),
               "untrained_seeds": seeds, "untrained_share_with_order": sum(chance) / seeds if seeds else None,
               "conv1_change_from_init": round(float((_weight(1, True) - init).norm() / init.norm()), 4)}
    passed = order.holds and not control.holds
    note = ("Components of the uncentred SVD of branched-1's conv1 kernels [24, 147]; colour score: share of "
            "energy off the grey direction; frequency score: share of DFT energy above half Nyquist. "
            "conv1_change_from_init: |trained - init| / |init| of the kernels (the untrained control is the "
            "recipe's own initialisation).")
    if order.holds and control.holds:
        note += " The untrained net shows the same order: the trained result cannot be told apart from it."
    t, u = numbers["trained"], numbers["untrained_control"]
    summary = (f"order {'holds' if order.holds else 'fails'}: #1 colour {fmt(t['colour'][0])} (top-{TOP} max "
               f"{fmt(max(t['colour']))}), #2 frequency {fmt(t['frequency'][1])} (#2-#{TOP} max "
               f"{fmt(max(t['frequency'][1:]))}); untrained seed 0 {'holds' if control.holds else 'fails'}, "
               f"order in {fmt(numbers['untrained_share_with_order'])} of {seeds} untrained seeds")
    controls = {"untrained_holds": u["holds"], "untrained_colour": u["colour"], "untrained_frequency": u["frequency"],
                "untrained_share_with_order": numbers["untrained_share_with_order"]}
    return Result(numbers, passed, ["first_layer_svd.png"], controls=controls, summary=summary, note=note)


CLAIMS = (
    Claim(
        name="first-layer-branches-split-colour",
        paper=PAPER,
        statement="a first layer read by 2 or 3 separate branches splits colour from black-and-white units "
                  "between the branches",
        criterion=f"for 2 and 3 branches: the branch colour split exceeds >= {PERCENTILE:.0%} of {DRAWS} random "
                  "equal-size partitions of the same units, and exceeds the untrained net's split",
        check=check_split,
    ),
    Claim(
        name="first-layer-svd-colour-then-frequency",
        paper=PAPER,
        statement="the unbranched first layer's top singular component is colour, the second frequency",
        criterion=f"of the top {TOP} SVD components, #1 has the largest colour score and #2 the largest "
                  "frequency score of #2-#4; the untrained net (seed 0) does not show this order",
        check=check_svd,
    ),
)
