"""Rotation equivariance between units: weights compared under rotation, tuning curves under angular shift.

(Over 400 lines because rotation equivariance is measured three ways — tuning shifts, rotated kernels, rotated
inputs through the network's own partners on a grid that rotates onto itself — and each needs the others' checks.)

Two units are rotated copies of each other (the Curve Detectors / Equivariance papers' claim about curve
families) when either

* their **weights** match once one kernel is rotated: ``weight_rotation_score(w_a, w_b, angle)`` is the cosine
  similarity between ``w_b`` and ``w_a`` rotated counter-clockwise by ``angle`` (``tuning.rotate_images``,
  exact for multiples of 90°; other angles resample bilinearly with zeros outside the kernel), and
  ``best_rotation`` the best of several angles; ``weight_equivariance_matrix`` scores every pair of a layer's
  kernels at once; or
* their **tuning curves** match once one is shifted around the circle: ``tuning_shift_score(a, b)`` is the
  best Pearson correlation between ``b`` and a circular shift of ``a`` (``b(θ) ≈ a(θ - shift)``), computed
  for every shift at once by FFT; ``equivariance_matrix`` scores every pair of units of a ``RadialTuning``.

Between layers, a unit's input weights cannot be compared with a plain rotation: the input channels are
themselves features that rotate into one another (a horizontal-line unit becomes a vertical-line unit).
``rotation_partners(model, layer, images, quarter)`` estimates that action from data: for each unit ``i`` of
``layer``, the unit ``j`` whose map on the images turned by ``quarter`` quarter turns (turned back) correlates
best with ``i``'s map on the originals.  That is only exact on a grid that rotates onto itself: a stride-2 layer
with TensorFlow "SAME" padding pads one pixel more after than before at an even input size, so its grid (and every
grid after it) sits a fraction of a cell off the image's centre and ``rot90`` of a map is not the map of the turned
image.  ``rotation_grid_error(model, layer, size)`` measures this (a copy of the model with 4-fold symmetric kernels
fed a 4-fold symmetric image: 0 exactly when the grid rotates onto itself); ``rotation_safe_size`` finds the
nearest input size at or above ``size`` where it does (the shapes organism: sizes ``4k + 1`` such as 65), and
``rotation_partners`` pads its images to it (edge pixels repeated below and right) unless told ``pad=False``.
``partnered_rotation_score(w_a, w_b, quarter, partners)`` then asks
the "Naturally Occurring Equivariance" question: is ``w_b[partner(c)] ≈ rot(w_a[c])`` over the input channels
``c`` that have a partner?

``families(scores, threshold)`` groups units into families: the connected components of the graph whose edges
are the pairs scoring at least ``threshold`` (single-linkage agglomerative clustering cut at ``threshold``).

``orientation_weight_profile(weights, pref_a, pref_b, bins)`` averages weights ``[B, A]`` between two sets of
oriented units by the circular difference of their preferred orientations: the Curve Detectors paper's
"neighbouring orientations excite, opposite ones inhibit" read as a number per bin.

Example::

    >>> import torch
    >>> from mechscope.vision.families.equivariance import best_rotation, tuning_shift_score, families
    >>> w = torch.arange(18.0).reshape(2, 3, 3)
    >>> best_rotation(w, torch.rot90(w, 1, (1, 2)))
    (90.0, 1.0)
    >>> a = torch.tensor([0.0, 1.0, 4.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    >>> score, shift = tuning_shift_score(a, a.roll(2))
    >>> round(score, 6), shift
    (1.0, 90.0)
    >>> families(torch.tensor([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]]), 0.8)
    [[0, 1], [2]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mechscope.errors import MechscopeError
from mechscope.vision.families.tuning import RadialTuning, rotate_images

__all__ = ["weight_rotation_score", "best_rotation", "weight_equivariance_matrix", "tuning_shift_score",
           "shift_scores", "equivariance_matrix", "EquivarianceMatrix", "families", "QUARTER_TURNS",
           "RotationPartners", "rotation_partners", "partnered_rotation_score", "rotation_grid_error",
           "rotation_safe_size", "orientation_weight_profile"]

QUARTER_TURNS = (0.0, 90.0, 180.0, 270.0)


def _kernel(w: torch.Tensor, what: str) -> torch.Tensor:
    w = torch.as_tensor(w)
    if w.dim() == 2:
        w = w[None]
    if w.dim() != 3:
        raise MechscopeError(f"{what} must be a kernel [C_in, kh, kw] (or [kh, kw]), got shape {tuple(w.shape)}")
    return w.detach().to(torch.float64)


def _rotate(w: torch.Tensor, angle: float) -> torch.Tensor:
    """Kernels ``[N, C_in, kh, kw]`` rotated counter-clockwise by ``angle`` degrees; zeros outside."""
    quarter = float(angle) / 90.0
    if quarter == round(quarter) and w.shape[-1] == w.shape[-2]:
        # an exact permutation; the same direction as rotate_images (checked in the tests)
        return torch.rot90(w, int(round(quarter)) % 4, dims=(-2, -1))
    return rotate_images(w, float(angle), fill=0.0)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return 0.0
    return float((a * b).sum() / (na * nb))


def weight_rotation_score(w_a: torch.Tensor, w_b: torch.Tensor, angle_deg: float) -> float:
    """Cosine similarity between ``w_b [C_in, kh, kw]`` and ``w_a [C_in, kh, kw]`` rotated counter-clockwise
    by ``angle_deg``; in ``[-1, 1]`` (0 when either kernel is all zeros)."""
    a, b = _kernel(w_a, "w_a"), _kernel(w_b, "w_b")
    if a.shape != b.shape:
        raise MechscopeError(f"kernels must have the same shape to be compared, got {tuple(a.shape)} and "
                             f"{tuple(b.shape)}")
    return _cosine(_rotate(a[None], angle_deg)[0], b)


def best_rotation(w_a: torch.Tensor, w_b: torch.Tensor,
                  angles: Sequence[float] = QUARTER_TURNS) -> tuple[float, float]:
    """``(angle, score)``: the angle among ``angles`` (degrees) at which rotating ``w_a`` best matches ``w_b``
    (``weight_rotation_score``); the first such angle on ties."""
    if len(angles) == 0:
        raise MechscopeError("best_rotation needs at least one angle")
    scores = [weight_rotation_score(w_a, w_b, a) for a in angles]
    best = max(range(len(scores)), key=lambda i: scores[i])
    return float(angles[best]), round(scores[best], 12)


def weight_equivariance_matrix(weights: torch.Tensor, angles: Sequence[float] = QUARTER_TURNS
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pair of a layer's kernels ``weights [C, C_in, kh, kw]`` compared under rotation.

    Returns ``(score [C, C], angle [C, C])``: ``score[i, j]`` the best cosine between kernel ``j`` and kernel
    ``i`` rotated by one of ``angles``, ``angle[i, j]`` that angle (degrees).
    """
    w = torch.as_tensor(weights).detach().to(torch.float64)
    if w.dim() != 4:
        raise MechscopeError(f"weights must be [C_out, C_in, kh, kw], got shape {tuple(w.shape)}")
    if len(angles) == 0:
        raise MechscopeError("weight_equivariance_matrix needs at least one angle")

    def unit_rows(x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        norm = flat.norm(dim=1, keepdim=True)
        return torch.where(norm > 0, flat / norm.clamp_min(1e-300), torch.zeros_like(flat))

    target = unit_rows(w)
    per_angle = torch.stack([unit_rows(_rotate(w, a)) @ target.T for a in angles])  # [A, C, C]
    score, which = per_angle.max(0)
    angle = torch.tensor([float(a) for a in angles], dtype=torch.float64)[which]
    return score, angle


def _curves(x: torch.Tensor, what: str) -> torch.Tensor:
    x = torch.as_tensor(x).detach().to(torch.float64)
    if x.dim() == 1:
        x = x[None]
    if x.dim() != 2 or x.shape[-1] < 2:
        raise MechscopeError(f"{what} must be tuning curves [O] or [C, O] with O >= 2, got shape {tuple(x.shape)}")
    x = x - x.mean(-1, keepdim=True)
    norm = x.norm(dim=-1, keepdim=True)
    return torch.where(norm > 1e-12 * (1 + x.abs().amax(-1, keepdim=True)), x / norm.clamp_min(1e-300),
                       torch.zeros_like(x))


def shift_scores(curves_a: torch.Tensor, curves_b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of ``curves_b [B, O]`` with every circular shift of ``curves_a [A, O]``:
    ``[A, B, O]``, entry ``s`` correlating ``b`` with ``a.roll(s)``.  A flat curve correlates 0 with anything."""
    a, b = _curves(curves_a, "curves_a"), _curves(curves_b, "curves_b")
    if a.shape[-1] != b.shape[-1]:
        raise MechscopeError(f"tuning curves must have the same number of orientations, got {a.shape[-1]} and "
                             f"{b.shape[-1]}")
    n = a.shape[-1]
    fa, fb = torch.fft.rfft(a, dim=-1), torch.fft.rfft(b, dim=-1)
    # sum_t b[t] a[t - s] = circular cross-correlation: irfft(conj(A) B)[s]
    return torch.fft.irfft(fa.conj()[:, None, :] * fb[None, :, :], n=n, dim=-1)


def tuning_shift_score(curve_a: torch.Tensor, curve_b: torch.Tensor) -> tuple[float, float]:
    """``(score, shift)``: the best correlation between ``curve_b [O]`` and ``curve_a [O]`` shifted around the
    circle, and that shift in degrees (``curve_b(θ) ≈ curve_a(θ - shift)``; ``O`` orientations evenly spaced
    over 360°, as in ``RadialTuning.responses`` rows)."""
    a, b = torch.as_tensor(curve_a), torch.as_tensor(curve_b)
    if a.dim() != 1 or b.dim() != 1:
        raise MechscopeError(f"tuning_shift_score compares two curves [O], got shapes {tuple(a.shape)} and "
                             f"{tuple(b.shape)}; use equivariance_matrix for many")
    s = shift_scores(a, b)[0, 0]
    k = int(s.argmax())
    return float(s[k]), k * 360.0 / len(s)


@dataclass(frozen=True)
class EquivarianceMatrix:
    """Pairwise tuning-curve equivariance of ``channels``: ``score [C, C]`` (best shifted correlation) and
    ``shift [C, C]`` (degrees by which unit ``i``'s curve is shifted to match unit ``j``'s)."""

    channels: list[int]
    score: torch.Tensor
    shift: torch.Tensor

    def families(self, threshold: float = 0.8) -> list[list[int]]:
        """Families of channel ids (see ``families``)."""
        return families(self.score, threshold, self.channels)


def equivariance_matrix(tuning: RadialTuning | torch.Tensor, channels: Sequence[int] | None = None, *,
                        chunk: int = 64) -> EquivarianceMatrix:
    """Pairwise ``tuning_shift_score`` of units' tuning curves.

    Args:
        tuning: a ``RadialTuning`` (its ``responses [C, O]``) or curves ``[C, O]`` directly (channels then
            numbered ``0..C-1``).
        channels: channel ids to compare (a subset of the tuning's channels); default all.
        chunk: rows computed at a time (memory ``chunk x C x O``).
    """
    if isinstance(tuning, RadialTuning):
        curves, ids = tuning.responses, list(tuning.channels)
    else:
        curves = torch.as_tensor(tuning)
        if curves.dim() != 2:
            raise MechscopeError(f"tuning curves must be [C, O], got shape {tuple(curves.shape)}")
        ids = list(range(curves.shape[0]))
    if channels is not None:
        missing = [c for c in channels if c not in ids]
        if missing:
            raise MechscopeError(f"channels {missing} are not in the tuning curves (which have channels "
                                 f"{ids[:10]}{'...' if len(ids) > 10 else ''})")
        curves = curves[[ids.index(c) for c in channels]]
        ids = list(channels)
    n, o = curves.shape
    score = torch.empty(n, n, dtype=torch.float64)
    shift = torch.empty(n, n, dtype=torch.float64)
    for lo in range(0, n, max(1, chunk)):
        s = shift_scores(curves[lo:lo + chunk], curves)
        best, k = s.max(-1)
        score[lo:lo + chunk], shift[lo:lo + chunk] = best, k.to(torch.float64) * (360.0 / o)
    return EquivarianceMatrix(ids, score, shift)


def families(score_matrix: torch.Tensor, threshold: float, channels: Sequence[int] | None = None
             ) -> list[list[int]]:
    """Clusters of units: connected components of the graph with an edge wherever
    ``score_matrix [C, C] >= threshold`` (either direction), largest first, members in ascending order.

    Members are indices ``0..C-1``, or the matching entries of ``channels``.
    """
    s = torch.as_tensor(score_matrix)
    if s.dim() != 2 or s.shape[0] != s.shape[1]:
        raise MechscopeError(f"score_matrix must be square [C, C], got shape {tuple(s.shape)}")
    n = s.shape[0]
    if channels is not None and len(channels) != n:
        raise MechscopeError(f"{len(channels)} channels given for a {n}x{n} score matrix")
    edges = (s >= threshold) | (s >= threshold).T
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in edges.nonzero().tolist():
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    out = sorted(groups.values(), key=lambda g: (-len(g), g[0]))
    if channels is not None:
        out = [[channels[i] for i in g] for g in out]
    return out


@dataclass(frozen=True)
class RotationPartners:
    """How ``quarter`` counter-clockwise quarter turns of the input act on a layer's units: unit ``i`` becomes
    ``partner[i]`` (``[C]``), with Pearson correlation ``corr[i]`` (``[C]``) between ``i``'s map on the images and
    ``partner[i]``'s map on the turned images, turned back (over images and interior positions); ``size`` is the
    input size the maps were computed at (after any padding to a grid that rotates onto itself)."""

    layer: str
    quarter: int
    partner: torch.Tensor
    corr: torch.Tensor
    size: int | None = None

    def matched(self, min_corr: float) -> torch.Tensor:
        """Indices ``[K]`` of the units whose partner correlates at least ``min_corr``."""
        return (self.corr >= min_corr).nonzero()[:, 0]


@torch.no_grad()
def rotation_grid_error(model: torch.nn.Module, layer: str, size: int, *, channels: int = 3, seed: int = 0
                        ) -> float:
    """How far ``layer``'s grid is from rotating onto itself at input ``size x size``: the largest difference
    between a map and its quarter turn, relative to the map's largest value, in a copy of ``model`` whose every
    square convolution kernel is replaced by the mean of its four quarter turns, fed an image that its own
    quarter turn leaves unchanged.  Such a copy is exactly equivariant wherever padding and stride are, so the
    error is 0 (up to rounding) exactly when the grid is centred on the image; strided "SAME" layers at sizes
    that leave uneven padding give errors of order 1.  ``channels`` is the model's input depth.

    >>> from torch import nn
    >>> from mechscope.zoo.inceptionv1 import SameConv2d
    >>> net = nn.Sequential(SameConv2d(3, 4, 5, stride=2))
    >>> rotation_grid_error(net, "0", 16) > 0.1, rotation_grid_error(net, "0", 17) < 1e-6
    (True, True)
    """
    import copy

    from mechscope.capture import as_map, capture
    from mechscope.devices import eval_mode, model_device
    from mechscope.units import parse, validate

    name = parse(layer).layer
    validate(model, name)
    sym = copy.deepcopy(model)
    for m in sym.modules():
        if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] == m.weight.shape[-2]:
            w = m.weight.detach()
            m.weight.copy_(sum(torch.rot90(w, k, (-2, -1)) for k in range(4)) / 4)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, channels, size, size, generator=g)
    x = sum(torch.rot90(x, k, (2, 3)) for k in range(4)) / 4
    p = next(sym.parameters(), None)
    x = x.to(device=model_device(sym), dtype=p.dtype if p is not None else torch.float32)
    with eval_mode(sym):
        a = as_map(capture(sym, x, [name])[name], name, "rotation grid").double()
    top = float(a.abs().max())
    return 0.0 if top == 0 else float((torch.rot90(a, 1, (2, 3)) - a).abs().max()) / top


def rotation_safe_size(model: torch.nn.Module, layer: str, size: int, *, search: int = 8, tol: float = 1e-4,
                       channels: int = 3) -> int:
    """The smallest input size in ``size .. size + search`` at which ``layer``'s grid rotates onto itself
    (``rotation_grid_error <= tol``); ``MechscopeError`` if there is none."""
    for s in range(int(size), int(size) + search + 1):
        if rotation_grid_error(model, layer, s, channels=channels) <= tol:
            return s
    raise MechscopeError(f"no input size in {size}..{size + search} puts {layer}'s grid onto itself under a "
                         f"quarter turn; pass images of a size that does, or pad=False to accept the offset")


@torch.no_grad()
def rotation_partners(model: torch.nn.Module, layer: str, images: torch.Tensor, quarter: int, *,
                      border: int = 2, batch_size: int = 128, pad: bool = True) -> RotationPartners:
    """Estimate which unit of ``layer`` each unit turns into when the input ``images [N, 3, H, W]`` (square) is
    rotated by ``quarter`` x 90° counter-clockwise (exact permutations of pixels, as ``rotate_images``).

    The turned images' maps are turned back and correlated, position by position (``border`` positions dropped
    on each side, where padding breaks the symmetry), with the originals' maps; each unit's partner is its most
    correlated unit.  An equivariant layer has partners with correlation near 1; a layer of rotation-invariant
    units has each unit its own partner.

    With ``pad`` (default) the images are first padded (edge pixels repeated below and to the right) to
    ``rotation_safe_size(model, layer, H)``, so that turning a map back lands each position on the one it came
    from; ``pad=False`` uses the images as they are (offset by a fraction of a cell after strided layers at
    sizes whose padding is uneven; see ``rotation_grid_error``).
    """
    from mechscope.capture import as_map, capture
    from mechscope.devices import eval_mode
    from mechscope.units import parse, validate

    name = parse(layer).layer
    validate(model, name)
    if images.dim() != 4 or images.shape[-1] != images.shape[-2]:
        raise MechscopeError(f"rotation_partners needs square images [N, C, H, H], got {tuple(images.shape)}")
    from mechscope.vision.families.universality import CrossCorrelation

    size = images.shape[-1]
    if pad:
        size = rotation_safe_size(model, name, size, channels=images.shape[1])
        if size != images.shape[-1]:
            extra = size - images.shape[-1]
            images = torch.nn.functional.pad(images, (0, extra, 0, extra), mode="replicate")
    q = int(quarter) % 4
    acc = CrossCorrelation()
    with eval_mode(model):
        for lo in range(0, len(images), batch_size):
            x = images[lo:lo + batch_size]
            a = as_map(capture(model, x, [name])[name], name, "rotation partners").double()
            b = as_map(capture(model, torch.rot90(x, q, (2, 3)), [name])[name], name, "rotation partners")
            b = torch.rot90(b.double(), -q, (2, 3))
            if border and min(a.shape[-2:]) > 2 * border:
                a, b = a[..., border:-border, border:-border], b[..., border:-border, border:-border]
            acc.add(a.permute(1, 0, 2, 3).reshape(a.shape[1], -1), b.permute(1, 0, 2, 3).reshape(b.shape[1], -1))
    best, partner = acc.result("rotation_partners").max(1)
    return RotationPartners(name, q, partner, best.float(), int(size))


def partnered_rotation_score(w_a: torch.Tensor, w_b: torch.Tensor, quarter: int, partners: torch.Tensor,
                             channels: torch.Tensor | None = None) -> float:
    """Cosine similarity between ``w_b [C_in, k, k]`` read at the partners of ``channels`` and ``w_a [C_in, k, k]``
    turned by ``quarter`` quarter turns: 1 when unit b's weights are unit a's rotated, with every input channel
    replaced by the channel it rotates into (``partners [C_in]``, e.g. ``rotation_partners(...).partner``).
    ``channels`` (default all) restricts the comparison, e.g. to ``RotationPartners.matched(0.8)``."""
    a, b = _kernel(w_a, "w_a"), _kernel(w_b, "w_b")
    if a.shape != b.shape or a.shape[-1] != a.shape[-2]:
        raise MechscopeError(f"kernels must be square and of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    p = torch.as_tensor(partners).long()
    if p.shape != (a.shape[0],):
        raise MechscopeError(f"partners must give one channel per input channel ({a.shape[0]}), got shape "
                             f"{tuple(p.shape)}")
    c = torch.arange(a.shape[0]) if channels is None else torch.as_tensor(channels).long()
    return _cosine(torch.rot90(a[c], int(quarter) % 4, (-2, -1)), b[p[c]])


def orientation_weight_profile(weights: torch.Tensor, pref_a: torch.Tensor, pref_b: torch.Tensor,
                               bins: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights between oriented units averaged by the difference of their preferred orientations.

    Args:
        weights: ``[B, A]``, e.g. the summed expanded weight from unit ``a`` of one layer to unit ``b`` of the next.
        pref_a, pref_b: preferred orientations in degrees, ``[A]`` and ``[B]``.
        bins: number of equal bins over the absolute circular difference ``0..180`` degrees.

    Returns:
        ``(centres [bins], mean [bins], count [bins])``: bin centres (degrees), the mean weight of the pairs in
        each bin (NaN where a bin is empty) and how many pairs fell in it.  A pair of the same unit (``a is b``)
        is counted like any other; drop it from ``weights`` (NaN) to leave it out: NaN weights are ignored.

    >>> w = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    >>> orientation_weight_profile(w, torch.tensor([0.0, 180.0]), torch.tensor([0.0, 180.0]), bins=2)[1]
    tensor([ 1., -1.], dtype=torch.float64)
    """
    w = torch.as_tensor(weights).detach().to(torch.float64)
    a = torch.as_tensor(pref_a, dtype=torch.float64)
    b = torch.as_tensor(pref_b, dtype=torch.float64)
    if w.dim() != 2 or w.shape != (len(b), len(a)):
        raise MechscopeError(f"weights must be [B, A] = [{len(b)}, {len(a)}] for the preferences given, got "
                             f"shape {tuple(w.shape)}")
    if bins < 1:
        raise MechscopeError(f"bins must be >= 1, got {bins}")
    diff = ((b[:, None] - a[None, :] + 180) % 360 - 180).abs()           # [B, A] in 0..180
    idx = (diff / (180.0 / bins)).floor().clamp(max=bins - 1).long()
    ok = ~torch.isnan(w)
    total = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx[ok], w[ok])
    count = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx[ok], torch.ones_like(w[ok]))
    mean = torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))
    centres = (torch.arange(bins, dtype=torch.float64) + 0.5) * (180.0 / bins)
    return centres, mean, count.long()
