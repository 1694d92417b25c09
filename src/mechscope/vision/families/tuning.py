"""Tuning curves: how a unit's response varies along a stimulus parameter.

(Over 400 lines because the three tuning measurements of the Curve Detectors paper — radial, orientation x
curvature, rotated dataset examples — share their stimulus grids, readout position and result type.)

``radial_tuning_curve`` is the Curve Detectors paper's measurement: curves (``stimuli.curves``) at
``n_orientations`` orientations evenly around the circle (720 = 0.5° steps, the paper's setting), at several
radii, with the unit's response taken as the **maximum over radius**.  The response is read at one spatial
position of the layer's map: ``"max"`` (default) is the position near the centre where the unit's strongest
response to any of the stimuli occurs (the stimuli are centred, so this is where the unit is best placed to see
them; of the strongest of the channels asked for, as all share one position), ``"layer_max"`` the same over
every channel of the layer (so that a unit's curve does not depend on which other units were measured with it),
``"centre"`` the middle of the map, or an explicit ``(x, y)``.  The same is measured for straight lines
(``stimuli.lines``) so that a curve detector can be told from a line detector: ``curve_preference`` is the
ratio of the best curve response to the best line response.

``curve_detectors`` ranks the units of a layer by these measurements and groups the curve detectors by
preferred orientation; ``orientation_coverage`` counts how much of the circle a set of detectors covers.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from mechscope.vision.families.tuning import radial_tuning_curve
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 5, padding=2), nn.ReLU())
    >>> tc = radial_tuning_curve(net, "1", n_orientations=8, radii=(0.2,), size=16, progress=False)
    >>> tc.responses.shape, tc.orientations.tolist()[:3]
    (torch.Size([4, 8]), [0.0, 45.0, 90.0])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mechscope.capture import as_map, capture
from mechscope.devices import model_device
from mechscope.errors import MechscopeError
from mechscope.units import Unit, parse, validate
from mechscope.vision.families import stimuli

DEFAULT_RADII = (0.08, 0.12, 0.18, 0.27, 0.4)


@dataclass(frozen=True)
class RadialTuning:
    """Responses ``[C, O]`` of ``channels`` to curves at ``orientations`` (degrees ``[O]``), max over radius;
    ``best_radius [C, O]`` the radius achieving it; ``lines [C, O]`` the responses to straight lines at the
    same orientations (normal direction); ``position`` the ``(x, y)`` read; ``by_radius [C, R, O]`` the
    responses at each of ``radii`` (the orientation x curvature map; ``plot_curvature`` draws it)."""

    layer: str
    channels: list[int]
    orientations: torch.Tensor
    responses: torch.Tensor
    best_radius: torch.Tensor
    lines: torch.Tensor
    position: tuple[int, int]
    by_radius: torch.Tensor | None = None
    radii: tuple[float, ...] = ()

    @property
    def preferred(self) -> torch.Tensor:
        """Preferred orientation in degrees ``[C]`` (the argmax of the curve tuning curve)."""
        return self.orientations[self.responses.argmax(1)]

    @property
    def curve_preference(self) -> torch.Tensor:
        """Best curve response over best line response ``[C]`` (> 1: prefers curves)."""
        return self.responses.max(1).values / self.lines.max(1).values.clamp_min(1e-6)

    @property
    def opposite(self) -> torch.Tensor:
        """Response 180° away from the preferred orientation over the peak response ``[C]``: near 1 for line
        and edge detectors (which answer both ways a curve can open), near 0 for a curve detector."""
        n = self.responses.shape[1]
        peak, arg = self.responses.max(1)
        back = self.responses.gather(1, ((arg + n // 2) % n)[:, None])[:, 0]
        return back / peak.clamp_min(1e-12)

    @property
    def width(self) -> torch.Tensor:
        """Full width at half maximum of the tuning curve around its peak, degrees ``[C]`` (360 when the
        response never drops below half its peak)."""
        r = self.responses
        peak = r.max(1, keepdim=True).values
        above = r >= peak / 2
        n = r.shape[1]
        step = 360.0 / n
        shift = r.argmax(1)
        out = []
        for c in range(r.shape[0]):
            row = torch.roll(above[c], -int(shift[c]))
            if bool(row.all()):
                out.append(360.0)
                continue
            fwd = int(torch.nonzero(~row)[0])
            back = int(torch.nonzero(~row.flip(0))[0])
            out.append(step * (fwd + back - 1))
        return torch.tensor(out)

    def selectivity(self) -> torch.Tensor:
        """1 - circular variance of the (non-negative part of the) tuning curve ``[C]``: 0 flat, 1 one angle."""
        r = self.responses.clamp_min(0)
        z = torch.polar(torch.ones_like(self.orientations), torch.deg2rad(self.orientations))
        total = r.sum(1).clamp_min(1e-12)
        return ((r.to(torch.complex64) * z).sum(1).abs() / total).float()

    def plot_curvature(self, channel: int, ax=None):
        """Heatmap of one channel's response over orientation (x) and curvature = 1 / radius (y, straight
        lines at the bottom row); returns the axes."""
        import matplotlib.pyplot as plt

        i = self.channels.index(channel)
        if self.by_radius is None:
            raise MechscopeError("this RadialTuning keeps no per-radius responses")
        order = sorted(range(len(self.radii)), key=lambda r: -self.radii[r])  # large radius (flat) first
        rows = torch.cat([self.lines[i][None], self.by_radius[i][order]])
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 2.4))
        ax.imshow(rows.numpy(), aspect="auto", origin="lower", cmap="magma",
                  extent=(0, 360, -0.5, len(order) + 0.5))
        ax.set_yticks(range(len(order) + 1), ["line"] + [f"1/{self.radii[r]:.2g}" for r in order])
        ax.set_xlabel("orientation (deg)")
        ax.set_title(f"{self.layer}:{channel}", fontsize=9)
        return ax

    def plot(self, channel: int, ax=None):
        """Polar plot of one channel's curve (and line) tuning; returns the axes."""
        import matplotlib.pyplot as plt

        i = self.channels.index(channel)
        if ax is None:
            _, ax = plt.subplots(subplot_kw={"projection": "polar"}, figsize=(3.2, 3.2))
        theta = torch.deg2rad(torch.cat([self.orientations, self.orientations[:1]])).numpy()
        for values, label, style in ((self.responses[i], "curves", "-"), (self.lines[i], "lines", ":")):
            ax.plot(theta, torch.cat([values, values[:1]]).numpy(), style, label=label)
        ax.set_title(f"{self.layer}:{channel}", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        return ax


def _read(model: nn.Module, layer: str, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    outs = []
    device = model_device(model)
    for lo in range(0, len(images), batch_size):
        acts = capture(model, images[lo:lo + batch_size].to(device), [layer])[layer]
        outs.append(as_map(acts, layer, "tuning curves").float().cpu())
    return torch.cat(outs)  # [N, C, x, y]


def _position(maps: torch.Tensor, position: str | tuple[int, int]) -> tuple[int, int]:
    h, w = maps.shape[-2:]
    if isinstance(position, tuple):
        if not (0 <= position[0] < h and 0 <= position[1] < w):
            raise MechscopeError(f"position {position} is outside the layer's {h}x{w} map")
        return position
    if position == "centre":
        return h // 2, w // 2
    if position != "max":
        raise MechscopeError(f"position must be 'max', 'layer_max', 'centre' or (x, y), got {position!r}")
    best = maps.amax(dim=(0, 1))  # [x, y]
    mask = torch.full_like(best, -math.inf)
    rx, ry = max(1, h // 4), max(1, w // 4)
    mask[h // 2 - rx:h // 2 + rx + 1, w // 2 - ry:w // 2 + ry + 1] = 0
    flat = int((best + mask).argmax())
    return flat // w, flat % w


@torch.no_grad()
def radial_tuning_curve(model: nn.Module, layer: str, channels: Sequence[int] | int | None = None, *,
                        n_orientations: int = 720, radii: Sequence[float] = DEFAULT_RADII, size: int = 64,
                        position: str | tuple[int, int] = "max", batch_size: int = 256,
                        progress: bool = True, **stimulus: float) -> RadialTuning:
    """Radial tuning curves of ``channels`` (default: all) of ``layer`` (a layer name, or ``"layer:n"``).

    Args:
        n_orientations: orientations evenly spaced over 360° (720 = the paper's 0.5° steps).
        radii: radii of curvature as fractions of ``size``; the response is the max over them.
        size: image side in pixels (the model's input size).
        position: ``"max"``, ``"layer_max"``, ``"centre"`` or ``(x, y)`` (see the module docstring).
        stimulus: passed to ``stimuli.curves`` / ``stimuli.lines`` (``length``, ``width``, ``background``…).
    Returns:
        ``RadialTuning`` with ``responses [C, O]``.
    """
    name = parse(layer)
    layer_name = name.layer
    if isinstance(name, Unit):
        channels = [name.channel]
    validate(model, layer_name)
    was_training = model.training
    model.eval()
    try:
        orientations = torch.arange(n_orientations, dtype=torch.float32) * (360.0 / n_orientations)
        per_radius = []
        for r in tqdm(list(radii), desc=f"radial tuning {layer_name}", disable=not progress):
            per_radius.append(_read(model, layer_name, stimuli.curves(orientations, r, size=size, **stimulus),
                                    batch_size))
        line_maps = _read(model, layer_name, stimuli.lines(orientations, size=size, **{
            k: v for k, v in stimulus.items() if k != "max_half_span"}), batch_size)
    finally:
        model.train(was_training)
    maps = torch.stack(per_radius)  # [R, O, C, x, y]
    chans = list(range(maps.shape[2])) if channels is None else (
        [channels] if isinstance(channels, int) else list(channels))
    bad = [c for c in chans if not 0 <= c < maps.shape[2]]
    if bad:
        raise MechscopeError(f"channels {bad} out of range: {layer_name} has {maps.shape[2]} channels")
    where = _position(maps.flatten(0, 1), "max") if position == "layer_max" else None   # before the subset
    maps = maps[:, :, chans]
    x, y = where or _position(maps.flatten(0, 1), position)
    at = maps[..., x, y]  # [R, O, C]
    best, which = at.max(0)
    radius = torch.tensor(list(radii), dtype=torch.float32)[which]
    return RadialTuning(layer_name, chans, orientations, best.T.contiguous(), radius.T.contiguous(),
                        line_maps[:, chans, x, y].T.contiguous(), (x, y), at.permute(2, 0, 1).contiguous(),
                        tuple(float(r) for r in radii))


@dataclass(frozen=True)
class CurveDetectors:
    """Units of a layer classified from their radial tuning: ``units`` (channel indices) with their
    ``preferred`` orientations (degrees), ``curve_preference`` and ``width`` (FWHM, degrees), ordered by
    preferred orientation; the criteria used are in ``criteria``."""

    layer: str
    units: list[int]
    preferred: list[float]
    curve_preference: list[float]
    width: list[float]
    criteria: dict[str, float]

    def coverage(self, sectors: int = 8) -> int:
        """How many of ``sectors`` equal sectors of the circle hold a detector's preferred orientation."""
        return orientation_coverage(self.preferred, sectors)

    def sharpest(self, sectors: int = 8) -> list[int]:
        """The most sharply tuned detector (smallest FWHM) of each of ``sectors`` equal sectors of orientation
        that holds one, by sector."""
        best: dict[int, tuple[float, int]] = {}
        for unit, pref, width in zip(self.units, self.preferred, self.width, strict=True):
            sector = int(pref % 360 // (360 / sectors))
            if sector not in best or width < best[sector][0]:
                best[sector] = (width, unit)
        return [best[k][1] for k in sorted(best)]


def orientation_coverage(preferred: Sequence[float], sectors: int = 8) -> int:
    """Number of the ``sectors`` equal sectors of 360° that contain at least one of ``preferred`` (degrees)."""
    return len({int((p % 360.0) // (360.0 / sectors)) for p in preferred})


def curve_detectors(tuning: RadialTuning, *, min_preference: float = 1.5, max_width: float = 150.0,
                    max_opposite: float = 0.25, min_response: float | None = None) -> CurveDetectors:
    """The units of ``tuning`` that respond to curves more than to any line (``curve_preference >=
    min_preference``), with a tuning curve narrower than ``max_width`` degrees (FWHM) that is one-sided (the
    response to the curve opening the other way is at most ``max_opposite`` of the peak) and a peak above
    ``min_response`` (default: 10 % of the strongest unit's peak)."""
    peak = tuning.responses.max(1).values
    floor = float(peak.max()) * 0.1 if min_response is None else min_response
    pref, width = tuning.curve_preference, tuning.width
    keep = (pref >= min_preference) & (width <= max_width) & (tuning.opposite <= max_opposite) & (peak > floor)
    idx = torch.nonzero(keep)[:, 0].tolist()
    idx.sort(key=lambda i: float(tuning.preferred[i]))
    return CurveDetectors(
        layer=tuning.layer,
        units=[tuning.channels[i] for i in idx],
        preferred=[float(tuning.preferred[i]) for i in idx],
        curve_preference=[round(float(pref[i]), 3) for i in idx],
        width=[float(width[i]) for i in idx],
        criteria={"min_preference": min_preference, "max_width": max_width, "max_opposite": max_opposite,
                  "min_response": floor},
    )


def curve_detector_census(model: nn.Module, layers: Sequence[str], *, size: int = 64, n_orientations: int = 72,
                          progress: bool = False, stimulus: dict[str, float] | None = None,
                          **criteria: float) -> dict[str, dict]:
    """For each layer: how many units are curve detectors (``curve_detectors``), how many of the 8 sectors of
    the circle their preferred orientations cover, and the detectors themselves, as a JSON-ready dict.
    ``stimulus`` is passed to the stimuli (e.g. ``{"background": 0.0, "colour": 1.0}``)."""
    out = {}
    for layer in layers:
        tc = radial_tuning_curve(model, layer, n_orientations=n_orientations, size=size, progress=progress,
                                 **(stimulus or {}))
        cd = curve_detectors(tc, **criteria)
        out[layer] = {
            "units": len(tc.channels),
            "curve_detectors": len(cd.units),
            "coverage_of_8_sectors": cd.coverage(8),
            "prefer_curves_1.5x": int((tc.curve_preference >= 1.5).sum()),
            "criteria": cd.criteria,
            "detectors": [{"unit": f"{layer}:{u}", "preferred_deg": p, "curve_preference": c, "fwhm_deg": w}
                          for u, p, c, w in zip(cd.units, cd.preferred, cd.curve_preference, cd.width,
                                                strict=True)],
        }
    return out


def rotate_images(images: torch.Tensor, degrees: float, fill: float = 0.5) -> torch.Tensor:
    """``images [N, C, H, W]`` rotated counter-clockwise (y up) by ``degrees`` about their centre, bilinear,
    uncovered corners set to ``fill``.  Multiples of 90° on square images are exact permutations."""
    theta = math.radians(degrees)
    c, s = math.cos(theta), math.sin(theta)
    n, _, h, w = images.shape
    # output pixel (x, y) samples the input at R(-theta) (x, y), in normalised coordinates (y down on screen)
    mat = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]], dtype=images.dtype, device=images.device)
    grid = F.affine_grid(mat.expand(n, -1, -1), list(images.shape), align_corners=False)
    ones = torch.ones_like(images[:, :1])
    out = F.grid_sample(torch.cat([images, ones], 1), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    inside = out[:, -1:]
    return out[:, :-1] + fill * (1 - inside)


@torch.no_grad()
def centred_top_examples(model: nn.Module, layer: str, channels: Sequence[int], batches: Iterable[Any], *,
                         k: int = 16, progress: bool = True) -> dict[int, torch.Tensor]:
    """For each of ``channels`` of ``layer``, the ``k`` images among ``batches`` (image tensors or
    ``(indices, images)`` pairs) on which the unit at the *centre* of the map responds most: ``{channel:
    [k, 3, H, W]}``, strongest first.  Centred on the unit's receptive field, they are what ``rotated_tuning``
    turns about the image centre (the Curve Detectors paper's rotated dataset examples)."""
    name = parse(layer).layer
    validate(model, name)
    if k < 1:
        raise MechscopeError(f"k must be at least 1, got {k}")
    chans = list(channels)
    best: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    was_training = model.training
    model.eval()
    try:
        for item in tqdm(batches, desc=f"examples {name}", disable=not progress):
            x = item[1] if isinstance(item, (tuple, list)) else item
            maps = as_map(capture(model, x, [name])[name], name, "centred examples").float()
            if not chans or max(chans) >= maps.shape[1] or min(chans) < 0:
                raise MechscopeError(f"channels {chans} out of range: {name} has {maps.shape[1]} channels")
            at = maps[:, chans, maps.shape[2] // 2, maps.shape[3] // 2]          # [B, C]
            for i, c in enumerate(chans):
                values, images = at[:, i], x
                if c in best:
                    values, images = torch.cat([best[c][0], values]), torch.cat([best[c][1], images])
                top = values.argsort(descending=True)[:k]
                best[c] = (values[top], images[top])
    finally:
        model.train(was_training)
    if not best:
        raise MechscopeError("centred_top_examples got no images")
    return {c: best[c][1] for c in chans}


@dataclass(frozen=True)
class RotationTuning:
    """Mean responses ``[C, A]`` of ``channels`` of ``layer`` to a set of images rotated by ``angles``
    (degrees ``[A]``), read at ``position``."""

    layer: str
    channels: list[int]
    angles: torch.Tensor
    responses: torch.Tensor
    position: tuple[int, int]

    def plot(self, ax=None):
        """Every channel's response against rotation; returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 2.6))
        for i, c in enumerate(self.channels):
            ax.plot(self.angles.numpy(), self.responses[i].numpy(), label=f"{self.layer}:{c}", lw=1)
        ax.set_xlabel("rotation (deg)")
        ax.set_ylabel("response")
        if len(self.channels) <= 12:
            ax.legend(fontsize=6, ncol=2)
        return ax


@torch.no_grad()
def rotated_tuning(model: nn.Module, layer: str, images: torch.Tensor, channels: Sequence[int] | None = None, *,
                   angles: int | Sequence[float] = 360, position: str | tuple[int, int] = "centre",
                   batch_size: int = 256, fill: float = 0.5, progress: bool = True) -> RotationTuning:
    """The Curve Detectors paper's rotated dataset examples: rotate ``images [N, 3, H, W]`` (e.g. one unit's top
    examples, centred on its receptive field) by each of ``angles`` (a count evenly over 360°, default 1° steps,
    or explicit degrees) and record the mean response of ``channels`` (default all) of ``layer`` at
    ``position`` (``"centre"``, ``"max"`` or ``(x, y)``, chosen on the unrotated images).  A rotation family
    shows as curves that are shifted copies of each other."""
    layer_name = parse(layer).layer
    validate(model, layer_name)
    grid = (torch.arange(angles, dtype=torch.float32) * (360.0 / angles) if isinstance(angles, int)
            else torch.tensor([float(a) for a in angles]))
    was_training = model.training
    model.eval()
    try:
        first = _read(model, layer_name, images, batch_size)
        chans = list(range(first.shape[1])) if channels is None else list(channels)
        bad = [c for c in chans if not 0 <= c < first.shape[1]]
        if bad:
            raise MechscopeError(f"channels {bad} out of range: {layer_name} has {first.shape[1]} channels")
        x, y = _position(first[:, chans], position)
        rows = []
        for a in tqdm(grid.tolist(), desc=f"rotations {layer_name}", disable=not progress):
            maps = _read(model, layer_name, rotate_images(images, a, fill), batch_size)
            rows.append(maps[:, chans, x, y].mean(0))
    finally:
        model.train(was_training)
    return RotationTuning(layer_name, chans, grid, torch.stack(rows, 1), (x, y))
