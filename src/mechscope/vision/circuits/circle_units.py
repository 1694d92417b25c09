"""Find circle units in a network: which later units read curve detectors arranged around a circle.

``find_circle_units(model, "mixed4a", detectors_layer="mixed3b")``:

1. the curve detectors of ``detectors_layer`` and their preferred orientations (``detector_orientations``:
   ``tuning.radial_tuning_curve`` + ``curve_detectors``; where fewer than ``min_detectors`` pass, as in an
   untrained net, the ``min_detectors`` units with the highest curve preference stand in, and ``fallback`` says so);
2. the expanded weights from every channel of ``detectors_layer`` to every unit of ``layer`` at one position
   (``layer_expanded_weights``: the linearized model of ``weights.expanded_weights``, all units in batches, one
   backward each), cropped to the support shared by the layer's units; the unit's centre is the middle of that
   support (the receptive field is symmetric about it);
3. ``circles.null_test`` on the detectors' slice: circle score, orientation-shuffled null, significance;
4. optionally (``stimuli=True``) each unit's responses, read at the same position, to ``circles.rings`` /
   ``arcs`` (90° and 180°) / ``tangents`` centred on that position's receptive field: ``ring_ratio`` = best ring
   over best arc or straight segment.

``CircleUnits.save(out)`` writes ``<layer>_circles.json`` and ``<layer>_circles.png`` (the top units' weights
drawn as oriented arcs at their offsets, and their ring / arc / line responses).

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Identity(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1))
    >>> from mechscope.vision.circuits.weights import expanded_weights
    >>> w = layer_expanded_weights(net, "0", "3", 16)
    >>> w.shape, torch.allclose(w[2], expanded_weights(net, "0", "3:2", 16, crop=False), atol=1e-6)
    (torch.Size([5, 3, 16, 16]), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mechscope.artefacts import atomic_write_json
from mechscope.capture import as_map, capture
from mechscope.devices import eval_mode, placement
from mechscope.errors import MechscopeError
from mechscope.plots import new_figure, save_figure
from mechscope.units import module_path, validate
from mechscope.vision.circuits import circles
from mechscope.vision.circuits.weights import Linearized
from mechscope.vision.evidence.receptive_field import receptive_field
from mechscope.vision.families.tuning import curve_detectors, radial_tuning_curve

RADII = (0.06, 0.1, 0.15, 0.2, 0.27)
MIDS = tuple(float(a) for a in range(0, 360, 45))
SPANS = (90.0, 180.0)


def layer_expanded_weights(model: nn.Module, layer_a: str, layer_b: str, input_size: int, *,
                           position: tuple[int, int] | None = None, channels: list[int] | None = None,
                           batch: int = 64) -> torch.Tensor:
    """Expanded weights (``weights.expanded_weights``, uncropped) from every channel of ``layer_a`` to each of
    ``channels`` (default all) of ``layer_b`` at ``position`` (default the map's centre), ``[U, C_A, H, W]``:
    the linearized model runs once on one zero image up to ``layer_a``, whose output is replaced by a zero leaf
    with one batch element per unit, and one unit per batch element is differentiated (so a layer after
    ``layer_a`` may not concatenate ``layer_a``'s output with an earlier one)."""
    a_layer, b_layer = validate(model, layer_a).layer, validate(model, layer_b).layer
    a_module = model.get_submodule(module_path(model, a_layer))
    where = placement(model)
    x = torch.zeros(1, 3, input_size, input_size, **where)
    if channels is None:
        with torch.no_grad(), eval_mode(model):
            channels = list(range(capture(model, x, [b_layer])[b_layer].shape[1]))
    out: list[torch.Tensor] = []
    for lo in range(0, len(channels), batch):
        pick = channels[lo:lo + batch]
        leaf: dict[str, torch.Tensor] = {}

        def replace(_m: nn.Module, _inputs: Any, output: Any, n: int = len(pick)) -> torch.Tensor | None:
            if "a" in leaf:  # a module called again: only its first output is layer A
                return None
            leaf["a"] = output.new_zeros(n, *output.shape[1:]).requires_grad_(True)
            return leaf["a"]

        handle = a_module.register_forward_hook(replace)
        try:
            with eval_mode(model), torch.enable_grad(), Linearized():
                b = capture(model, x, [b_layer])[b_layer]
        finally:
            handle.remove()
        if "a" not in leaf or b.dim() != 4:
            raise MechscopeError(f"{b_layer!r} must be a [batch, C, x, y] map computed after {a_layer!r}")
        px, py = position if position is not None else (b.shape[2] // 2, b.shape[3] // 2)
        target = b[torch.arange(len(pick)), torch.tensor(pick, device=b.device), px, py].sum()
        (grad,) = torch.autograd.grad(target, leaf["a"], allow_unused=True)
        if grad is None:
            raise MechscopeError(f"{b_layer!r} does not depend on {a_layer!r}")
        out.append(grad.detach().float().cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class Detectors:
    """Curve detectors of ``layer``: ``units``, ``preferred`` orientations (degrees); ``fallback`` when too few
    passed ``curve_detectors`` and the units with the highest curve preference stand in."""

    layer: str
    units: list[int]
    preferred: list[float]
    fallback: bool


def detector_orientations(model: nn.Module, layer: str, *, size: int = 64, n_orientations: int = 72,
                          min_detectors: int = 8) -> Detectors:
    """The curve detectors of ``layer`` with their preferred orientations (see the module docstring)."""
    tc = radial_tuning_curve(model, layer, n_orientations=n_orientations, size=size, progress=False)
    found = curve_detectors(tc)
    if len(found.units) >= min_detectors:
        return Detectors(tc.layer, found.units, found.preferred, False)
    idx = tc.curve_preference.argsort(descending=True)[:min_detectors].tolist()
    return Detectors(tc.layer, [tc.channels[i] for i in idx], [float(tc.preferred[i]) for i in idx], True)


def _support(w: torch.Tensor) -> tuple[slice, slice]:
    nz = w.abs().amax((0, 1)) > 0
    if not nz.any():
        raise MechscopeError("the units have no weights from the detectors' layer")
    rows, cols = nz.any(1).nonzero()[:, 0], nz.any(0).nonzero()[:, 0]
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


@torch.no_grad()
def stimulus_responses(model: nn.Module, layer: str, position: tuple[int, int], centre: tuple[float, float], *,
                       size: int = 64, radii: tuple[float, ...] = RADII) -> dict[str, torch.Tensor]:
    """Every channel's response at ``position`` of ``layer`` to rings, arcs of each of ``SPANS`` and tangent
    segments centred on ``centre`` (pixels): ``{"ring": [C, R], "arc90": [C, R*M], ..., "line": [C, R*M]}``."""
    r = torch.tensor(radii)
    sets = {"ring": circles.rings(r, centre, size=size)}
    for span in SPANS:
        sets[f"arc{span:.0f}"] = circles.arcs(r, torch.tensor(MIDS), span, centre, size=size)
    sets["line"] = circles.tangents(r, torch.tensor(MIDS), 90.0, centre, size=size)
    x, y = position
    out = {}
    with eval_mode(model):
        for name, images in sets.items():
            act = as_map(capture(model, images.to(placement(model)["device"]), [layer])[layer], layer, "circles")
            out[name] = act[:, :, x, y].float().cpu().T
    return out


def ring_ratio(responses: dict[str, torch.Tensor]) -> torch.Tensor:
    """Best ring response over the best response to any arc or straight segment, per channel ``[C]``."""
    other = torch.stack([v.amax(1) for k, v in responses.items() if k != "ring"]).amax(0)
    return responses["ring"].amax(1) / other.clamp_min(1e-6)


@dataclass
class CircleUnits:
    """Result of ``find_circle_units``: the ``detectors``, per-unit ``test`` (``circles.NullTest``), ``weights``
    ``[U, D, h, w]`` (detectors' slice), ``centre`` in those crops, the ``position`` read and, with stimuli, the
    ``responses`` and ``ratio [U]``."""

    layer: str
    detectors: Detectors
    test: circles.NullTest
    weights: torch.Tensor
    centre: tuple[float, float]
    position: tuple[int, int]
    pixel_centre: tuple[float, float]
    responses: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def ratio(self) -> torch.Tensor | None:
        return ring_ratio(self.responses) if self.responses else None

    def significant(self) -> list[int]:
        """Units above their null, best score first."""
        idx = torch.nonzero(self.test.significant)[:, 0].tolist()
        return sorted(idx, key=lambda u: -float(self.test.scores[u]))

    def details(self, unit: int) -> circles.CircleDetails:
        return circles.circle_details(self.weights[unit], torch.tensor(self.detectors.preferred), centre=self.centre)

    def summary(self, top: int = 8) -> dict:
        """JSON-ready numbers: counts, the top significant units with score, null threshold, z, coverage."""
        sig = self.significant()
        rows = []
        for u in sig[:top]:
            d = self.details(u)
            row = {"unit": f"{self.layer}:{u}", "score": round(float(self.test.scores[u]), 4),
                   "null_q": round(float(self.test.threshold[u]), 4), "z": round(float(self.test.z[u]), 2),
                   "coverage_of_8": d.coverage, "orientation_sectors": d.orientations}
            if self.responses:
                row["ring_over_best_arc_or_line"] = round(float(self.ratio[u]), 3)
            rows.append(row)
        return {"layer": self.layer, "units": len(self.test.scores), "detectors_layer": self.detectors.layer,
                "detectors": len(self.detectors.units), "detector_fallback": self.detectors.fallback,
                "draws": int(self.test.null.shape[1]), "quantile": self.test.quantile,
                "significant": len(sig), "expected_by_chance": round((1 - self.test.quantile) * len(self.test.scores), 2),
                "position": list(self.position), "pixel_centre": list(self.pixel_centre), "top": rows}

    def figure(self, path: Path, top: int = 8) -> Path:
        """The top significant units' weights as arcs at their offsets (colour: agreement with the circle) and,
        with stimuli, their best ring / arc / line responses."""
        units = self.significant()[:top] or self.test.scores.argsort(descending=True)[:min(top, 4)].tolist()
        rows = 2 if self.responses else 1
        fig, axes = new_figure(rows, len(units), figsize=(2.4 * len(units), 2.5 * rows), squeeze=False)
        for j, u in enumerate(units):
            draw_arcs(self.details(u), self.centre, axes[0][j])
            axes[0][j].set_title(f"{self.layer}:{u}\nscore {float(self.test.scores[u]):.2f} "
                                 f"(null q {float(self.test.threshold[u]):.2f})", fontsize=7)
            if self.responses:
                names = list(self.responses)
                axes[1][j].bar(range(len(names)), [float(self.responses[k][u].max()) for k in names],
                               color=["tab:red"] + ["0.6"] * (len(names) - 1))
                axes[1][j].set_xticks(range(len(names)), names, fontsize=6)
                axes[1][j].set_title(f"ring / best other {float(self.ratio[u]):.2f}", fontsize=7)
        fig.tight_layout()
        return save_figure(fig, path, dpi=80, tight=False)

    def save(self, out: Path, top: int = 8) -> dict:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        summary = self.summary(top)
        summary["scores"] = [round(float(s), 4) for s in self.test.scores]
        atomic_write_json(out / f"{self.layer}_circles.json", summary)
        self.figure(out / f"{self.layer}_circles.png", top)
        return summary


def draw_arcs(d: circles.CircleDetails, centre: tuple[float, float], ax: Any) -> Any:
    """Each offset's weight-averaged detector orientation as a small arc opening that way (line width: positive
    weight; red: within 45° of the circle's orientation there, grey otherwise), y up, unit centre marked."""
    angle, weight = d.arrow_angle, d.arrow_weight
    top = float(weight.max()) or 1.0
    phi, rho = circles.offsets(*weight.shape, centre)
    for r in range(weight.shape[0]):
        for c in range(weight.shape[1]):
            w = float(weight[r, c]) / top
            if w < 0.05:
                continue
            x, y = c - centre[1], -(r - centre[0])
            t = math.radians(float(angle[r, c]))
            good = float(rho[r, c]) >= 0.5 and math.cos(t - math.radians(float(phi[r, c])) - math.pi) > math.cos(math.pi / 4)
            k = 0.4
            cx, cy = x + k * math.cos(t), y + k * math.sin(t)
            s = torch.linspace(t + math.pi - 1.0, t + math.pi + 1.0, 12)
            ax.plot((cx + k * torch.cos(s)).numpy(), (cy + k * torch.sin(s)).numpy(),
                    color="tab:red" if good else "0.55", lw=0.5 + 2.5 * w)
    ax.plot([0], [0], "k+", ms=6)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def find_circle_units(model: nn.Module, layer: str, *, detectors_layer: str = "mixed3b", size: int = 64,
                      n_orientations: int = 72, draws: int = 200, seed: int = 0, quantile: float = 0.99,
                      min_detectors: int = 8, stimuli: bool = True, radii: tuple[float, ...] = RADII,
                      detectors: Detectors | None = None) -> CircleUnits:
    """Circle units of ``layer`` reading the curve detectors of ``detectors_layer`` (module docstring)."""
    validate(model, layer)
    validate(model, detectors_layer)
    det = detectors or detector_orientations(model, detectors_layer, size=size, n_orientations=n_orientations,
                                             min_detectors=min_detectors)
    full = layer_expanded_weights(model, det.layer, layer, size)               # [U, C_A, H, W]
    rows, cols = _support(full)
    w = full[:, det.units, rows, cols].contiguous()
    centre = ((w.shape[2] - 1) / 2, (w.shape[3] - 1) / 2)
    test = circles.null_test(w, torch.tensor(det.preferred), draws=draws, seed=seed, quantile=quantile,
                             centre=centre)
    with torch.no_grad(), eval_mode(model):
        shape = capture(model, torch.zeros(1, 3, size, size, **placement(model)), [layer])[layer].shape
    position = (shape[2] // 2, shape[3] // 2)
    rf = receptive_field(model, layer, size, position=position)
    box = rf.unclipped or rf.box
    pixel_centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    result = CircleUnits(validate(model, layer).layer, det, test, w, centre, position, pixel_centre)
    if stimuli:
        result.responses.update(stimulus_responses(model, result.layer, position, pixel_centre, size=size,
                                                   radii=radii))
    return result
