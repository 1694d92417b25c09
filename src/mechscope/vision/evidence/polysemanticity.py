"""Polysemantic units: how many unrelated things a unit (or any direction) responds to, measured as the entropy
of the labels of its top-k dataset examples.

**The concept label** of a shapes-world image (``concept_labels``) is one categorical "what is in this image":

* ``shape`` scenes: the main shape's class (10 concepts: ``disc`` … ``cross``);
* ``curve`` scenes: curvature × a coarse orientation — ``gentle`` and ``sharp`` curves each in 4 bins of 90°
  (the direction to the centre of curvature: 0 = 0–90°, …), straight strokes one concept (9 concepts);
* ``boundary`` scenes: the direction from the low- to the high-frequency side in 4 bins of 90° (4 concepts).

23 concepts in all (``CONCEPTS``); the colour of the element is left out (it is orthogonal to "what", and a colour
unit would otherwise look monosemantic only by colour).  The rarest concepts (one class of shape, one bin of gentle
or sharp curves) each take about 4 % of the world's images, so a sample of ``n`` images holds about ``0.04 n`` of
each: keep ``k`` well below that.

**The measure** (``polysemanticity``): for each unit (column of ``acts [N, C]``, one value per image, e.g. the
unit's maximum over positions) take its ``k`` images of highest activation; ``entropy`` is the Shannon entropy
(bits) of their labels, ``effective`` = 2**entropy (the number of equally common labels with that entropy), and
``top_labels`` the most common labels with their shares.  A unit whose top-k are all one label has 0 bits; one
spread evenly over 4 labels has 2 bits.  A unit is ``live`` when it is positive on at least ``k`` images (a top-k
of zeros is an arbitrary tie, not evidence).

Example (hand-made activations)::

    >>> import torch
    >>> labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 3])
    >>> acts = torch.tensor([[5., 1.], [4., 1.], [3., 1.], [2., 1.], [0., 1.], [0., 2.], [0., 2.], [0., 2.]])
    >>> p = polysemanticity(acts, labels, k=4)
    >>> p.entropy.tolist(), p.effective.tolist(), p.live.tolist()
    ([0.0, 2.0], [1.0, 4.0], [True, True])
    >>> p.top_labels(0), p.top_labels(1, 2)
    ([(0, 1.0)], [(0, 0.25), (1, 0.25)])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mechscope.capture import as_map, capture
from mechscope.devices import model_device
from mechscope.errors import MechscopeError

SHAPE_NAMES = ("disc", "ring", "arc", "spiral", "wave", "line", "angle", "polygon", "star", "cross")
CONCEPTS: tuple[str, ...] = (
    *SHAPE_NAMES,
    *(f"gentle curve {a}-{a + 90}°" for a in range(0, 360, 90)),
    *(f"sharp curve {a}-{a + 90}°" for a in range(0, 360, 90)),
    "straight stroke",
    *(f"boundary {a}-{a + 90}°" for a in range(0, 360, 90)),
)
"""The 23 concept labels of ``concept_labels``, by index."""

_GENTLE, _SHARP, _STRAIGHT, _BOUNDARY = 10, 14, 18, 19


def concept_labels(labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """The concept index (into ``CONCEPTS``) of each image from the shapes world's labels (``generate`` /
    ``ShapesDataset.sample``): ``{"kind", "shape", "curve", "boundary", ...}`` of ``[N]`` -> ``[N]`` long.

    >>> from mechscope.data.shapes import ShapesDataset
    >>> _, labels = ShapesDataset(6, seed=0).sample(range(6))
    >>> c = concept_labels(labels)
    >>> c.shape, bool(((c >= 0) & (c < len(CONCEPTS))).all())
    (torch.Size([6]), True)
    """
    missing = [key for key in ("kind", "shape", "curve", "boundary") if key not in labels]
    if missing:
        raise MechscopeError(f"concept_labels needs the shapes world's labels; missing {missing}")
    kind, shape, curve, boundary = (labels[key].long() for key in ("kind", "shape", "curve", "boundary"))
    curved = torch.where(curve >= 16, _SHARP + (curve - 16).clamp(0, 15) // 4, _GENTLE + curve.clamp(0, 15) // 4)
    curves = torch.where(curve >= 32, _STRAIGHT, curved)
    bounds = _BOUNDARY + ((boundary - 1).clamp(0, 7) // 2)
    return torch.where(kind == 0, shape.clamp(0, 9), torch.where(kind == 1, curves, bounds))


@dataclass(frozen=True)
class Polysemanticity:
    """Per unit (``C`` units): ``entropy [C]`` (bits) of its top-``k`` examples' labels, ``effective [C]`` =
    2**entropy, ``counts [C, n_labels]`` (how many of its top-k carry each label), ``top_index [C, k]`` (its top
    images, highest first) and ``live [C]`` (positive on at least ``k`` images)."""

    entropy: torch.Tensor
    effective: torch.Tensor
    counts: torch.Tensor
    top_index: torch.Tensor
    live: torch.Tensor
    k: int

    def top_labels(self, unit: int, n: int = 3) -> list[tuple[int, float]]:
        """The ``n`` most common labels among ``unit``'s top-k as ``(label, share)``, commonest first (shares > 0)."""
        counts = self.counts[unit]
        order = sorted(range(len(counts)), key=lambda i: (-int(counts[i]), i))[:n]
        return [(i, round(int(counts[i]) / self.k, 4)) for i in order if counts[i] > 0]

    def median(self, live_only: bool = True) -> float:
        """The median entropy over the (live) units (the lower middle value for an even count, as
        ``torch.median``); ``nan`` when there are none."""
        values = self.entropy[self.live] if live_only else self.entropy
        return float(values.median()) if values.numel() else float("nan")


def entropy_bits(counts: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits of each row of ``counts [..., L]`` (non-negative; all-zero rows give 0).

    >>> entropy_bits(torch.tensor([[4, 0, 0], [1, 1, 0], [1, 1, 1]])).tolist()[:2]
    [0.0, 1.0]
    """
    p = counts.double() / counts.double().sum(-1, keepdim=True).clamp_min(1)
    return (-(p * torch.where(p > 0, p.log2(), torch.zeros_like(p))).sum(-1) + 0.0).float()  # + 0.0: no -0.0


def polysemanticity(acts: torch.Tensor, labels: torch.Tensor, k: int, n_labels: int | None = None
                    ) -> Polysemanticity:
    """The top-k label entropy of every column of ``acts [N, C]`` (one value per image and unit) with image
    labels ``labels [N]`` (ints in ``0..n_labels-1``; ``n_labels`` defaults to ``labels.max() + 1``).  Ties in the
    top-k are broken by the lower image index."""
    if acts.dim() != 2 or labels.dim() != 1 or acts.shape[0] != labels.shape[0]:
        raise MechscopeError(f"polysemanticity needs acts [N, C] and labels [N], got {tuple(acts.shape)} and "
                             f"{tuple(labels.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= acts.shape[0]:
        raise MechscopeError(f"k must be an integer in 1..{acts.shape[0]} (the number of images), got {k!r}")
    labels = labels.long()
    if labels.numel() and int(labels.min()) < 0:
        raise MechscopeError("labels must be non-negative integers")
    n_labels = int(labels.max()) + 1 if n_labels is None else n_labels
    if labels.numel() and int(labels.max()) >= n_labels:
        raise MechscopeError(f"a label is >= n_labels={n_labels}")
    # a stable sort on -acts: equal values keep the lower image index first
    top = torch.sort(-acts.float().T, dim=1, stable=True).indices[:, :k]       # [C, k]
    return from_top_examples(top, labels[top], n_labels, live=(acts > 0).sum(0) >= k)


def from_top_examples(top_index: torch.Tensor, top_labels: torch.Tensor, n_labels: int,
                      live: torch.Tensor | None = None) -> Polysemanticity:
    """The same measure from top-k examples found elsewhere (e.g. a dataset scan): ``top_index [C, k]`` and
    their labels ``top_labels [C, k]`` (ints in ``0..n_labels-1``); ``live [C]`` defaults to all true.

    >>> p = from_top_examples(torch.tensor([[3, 1], [0, 2]]), torch.tensor([[1, 1], [0, 2]]), 3)
    >>> p.entropy.tolist(), p.top_labels(1)
    ([0.0, 1.0], [(0, 0.5), (2, 0.5)])
    """
    if top_index.dim() != 2 or top_labels.shape != top_index.shape:
        raise MechscopeError(f"top_index and top_labels must both be [C, k], got {tuple(top_index.shape)} and "
                             f"{tuple(top_labels.shape)}")
    counts = torch.zeros(top_index.shape[0], n_labels, dtype=torch.long)
    counts.scatter_add_(1, top_labels.long(), torch.ones_like(top_labels, dtype=torch.long))
    h = entropy_bits(counts)
    live = torch.ones(top_index.shape[0], dtype=torch.bool) if live is None else live
    return Polysemanticity(entropy=h, effective=torch.exp2(h), counts=counts, top_index=top_index, live=live,
                           k=int(top_index.shape[1]))


@torch.no_grad()
def image_activations(model: nn.Module, layer: str, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Each unit's maximum over positions for each image: ``images [N, 3, H, W]`` -> ``[N, C]`` (a layer without
    positions: its output as is).  The model is run as it is (put it in eval mode first)."""
    return spatial_activations(model, layer, images, batch_size).amax(dim=(2, 3))


@torch.no_grad()
def spatial_activations(model: nn.Module, layer: str, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """A layer's maps over ``images [N, 3, H, W]``: ``[N, C, h, w]`` (on the CPU; a layer without positions as
    ``[N, C, 1, 1]``)."""
    if images.dim() != 4:
        raise MechscopeError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
    device = model_device(model, default=None)
    parts = []
    for lo in range(0, images.shape[0], batch_size):
        x = images[lo:lo + batch_size]
        out = capture(model, x.to(device) if device is not None else x, [layer])[layer]
        parts.append(as_map(out, layer, "per-image activations").cpu())
    return torch.cat(parts)


__all__ = ["CONCEPTS", "concept_labels", "Polysemanticity", "polysemanticity", "from_top_examples", "entropy_bits",
           "image_activations", "spatial_activations"]
