"""Rotation equivariance between units: weights compared under rotation, tuning curves under angular shift.

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
best with ``i``'s map on the originals.  ``partnered_rotation_score(w_a, w_b, quarter, partners)`` then asks
the "Naturally Occurring Equivariance" question: is ``w_b[partner(c)] ≈ rot(w_a[c])`` over the input channels
``c`` that have a partner?

``families(scores, threshold)`` groups units into families: the connected components of the graph whose edges
are the pairs scoring at least ``threshold`` (single-linkage agglomerative clustering cut at ``threshold``).

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
           "RotationPartners", "rotation_partners", "partnered_rotation_score"]

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
    ``partner[i]``'s map on the turned images, turned back (over images and interior positions)."""

    layer: str
    quarter: int
    partner: torch.Tensor
    corr: torch.Tensor

    def matched(self, min_corr: float) -> torch.Tensor:
        """Indices ``[K]`` of the units whose partner correlates at least ``min_corr``."""
        return (self.corr >= min_corr).nonzero()[:, 0]


@torch.no_grad()
def rotation_partners(model: torch.nn.Module, layer: str, images: torch.Tensor, quarter: int, *,
                      border: int = 2, batch_size: int = 128) -> RotationPartners:
    """Estimate which unit of ``layer`` each unit turns into when the input ``images [N, 3, H, W]`` (square) is
    rotated by ``quarter`` x 90° counter-clockwise (exact permutations of pixels, as ``rotate_images``).

    The turned images' maps are turned back and correlated, position by position (``border`` positions dropped
    on each side, where padding breaks the symmetry), with the originals' maps; each unit's partner is its most
    correlated unit.  An equivariant layer has partners with correlation near 1; a layer of rotation-invariant
    units has each unit its own partner.
    """
    from mechscope.capture import as_map, capture
    from mechscope.devices import eval_mode
    from mechscope.units import parse, validate

    name = parse(layer).layer
    validate(model, name)
    if images.dim() != 4 or images.shape[-1] != images.shape[-2]:
        raise MechscopeError(f"rotation_partners needs square images [N, C, H, H], got {tuple(images.shape)}")
    from mechscope.vision.families.universality import CrossCorrelation

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
    return RotationPartners(name, q, partner, best.float())


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
