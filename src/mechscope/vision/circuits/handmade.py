"""A curve detector written by hand, as in the Curve Circuits paper: line detectors arranged along an arc.

``curve_circuit(orientation, radius)`` builds a two-layer conv net with no training:

* ``lines`` (``nn.Conv2d(3, n_lines, line_kernel)`` + ReLU): ``n_lines`` line detectors, kernel ``k`` is a thin
  zero-mean bar (dark on light) whose normal points at ``k * 180 / n_lines`` degrees;
* ``curve`` (``nn.Conv2d(n_lines, 1, curve_kernel)`` + ReLU): one unit that, at every offset lying on an arc
  through its centre (centre of curvature in direction ``orientation`` at ``radius`` pixels), excites the line
  detector whose normal matches the arc's normal there (the tangent orientation turns along the arc) and
  inhibits the orthogonal one.

Its radial tuning curve (``tuning.radial_tuning_curve``) should peak at ``orientation`` and prefer curves to
lines, which is what the Curve Circuits paper showed of its artificial curve detector; ``reproduce`` compares it
with the organism's learned detectors.  Module paths (= layer names): ``lines_pre_relu``, ``lines``,
``curve_pre_relu``, ``curve``.

Example::

    >>> import torch
    >>> from mechscope.vision.circuits.handmade import curve_circuit
    >>> from mechscope.vision.families.tuning import radial_tuning_curve
    >>> net = curve_circuit(orientation=90.0, radius=8.0)
    >>> tc = radial_tuning_curve(net, "curve", n_orientations=36, radii=(0.12, 0.18), size=48, position="centre",
    ...                          progress=False)
    >>> abs(float(tc.preferred[0]) - 90.0) <= 10.0, float(tc.curve_preference[0]) > 1.5
    (True, True)
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from mechscope.data import draw


def _line_kernel(normal_deg: float, size: int, width: float = 1.5) -> torch.Tensor:
    """A zero-mean dark bar through the centre, normal at ``normal_deg``; ``[size, size]``, unit L2 norm."""
    px, py = draw.pixel_grid(size)
    o = torch.tensor([math.radians(normal_deg)])
    half = size / 2
    tx, ty = -torch.sin(o) * half, -torch.cos(o) * half
    c = torch.tensor([size / 2])
    bar = draw.stroke(draw.segment_distance(px, py, c - tx, c - ty, c + tx, c + ty), torch.tensor([width]))[0]
    k = -(bar - bar.mean())           # dark ink on a light background excites
    return k / k.norm()


def curve_circuit(orientation: float = 0.0, radius: float = 8.0, *, n_lines: int = 8, line_kernel: int = 5,
                  curve_kernel: int = 21, span: float = 100.0, inhibition: float = 0.5) -> nn.Sequential:
    """The hand-written two-layer curve detector (see the module docstring).

    Args:
        orientation: degrees, direction of the centre of curvature (the mechscope curve convention).
        radius: radius of curvature in pixels.
        n_lines: line detectors in the first layer (orientations every ``180 / n_lines`` degrees).
        span: degrees of arc, half on each side of the centre, over which line detectors are wired.
        inhibition: weight of the orthogonal line detector at each point of the arc (negative).
    """
    lines = nn.Conv2d(3, n_lines, line_kernel, padding=line_kernel // 2)
    curve = nn.Conv2d(n_lines, 1, curve_kernel, padding=curve_kernel // 2)
    with torch.no_grad():
        for k in range(n_lines):
            lines.weight[k] = _line_kernel(k * 180.0 / n_lines, line_kernel).expand(3, -1, -1) / 3
        lines.bias.zero_()
        curve.weight.zero_()
        o = math.radians(orientation)
        cx, cy = radius * math.cos(o), radius * math.sin(o)         # centre of curvature, y up
        mid = o + math.pi                                            # the arc point at the unit's centre
        half, centre = math.radians(span) / 2, curve_kernel // 2
        steps = max(8, int(4 * radius * half))
        for i in range(steps + 1):
            a = mid - half + 2 * half * i / steps
            x, y = cx + radius * math.cos(a), cy + radius * math.sin(a)
            col, row = round(centre + x), round(centre - y)
            if not (0 <= row < curve_kernel and 0 <= col < curve_kernel):
                continue
            normal = math.degrees(a) % 180.0                         # the arc's normal there, mod 180
            k = round(normal / (180.0 / n_lines)) % n_lines
            curve.weight[0, k, row, col] = 1.0
            curve.weight[0, (k + n_lines // 2) % n_lines, row, col] = -inhibition
        curve.bias.zero_()
    return nn.Sequential(OrderedDict([("lines_pre_relu", lines), ("lines", nn.ReLU()),
                                      ("curve_pre_relu", curve), ("curve", nn.ReLU())])).eval()
