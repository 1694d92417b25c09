"""The bundled vision organisms' radial tuning curves, computed once per process: a dozen claims start from the
same curves of the same layer (the curve detectors of ``shapes``' mixed3b), and ``reproduce all`` would otherwise
recompute them for each.

Example::

    >>> a = shapes_tuning("mixed4b", 8)
    >>> a is shapes_tuning("mixed4b", 8), tuple(a.responses.shape[:2])
    (True, (256, 8))
"""

from __future__ import annotations

from functools import lru_cache

from mechscope.vision.families.tuning import RadialTuning, radial_tuning_curve
from mechscope.zoo.registry import load


@lru_cache(maxsize=16)
def shapes_tuning(layer: str, n_orientations: int, model: str = "shapes", weights: str = "bundled",
                  seed: int = 0) -> RadialTuning:
    """``radial_tuning_curve`` of every unit of ``layer`` of the zoo model ``model`` (``weights="random"``: the
    untrained net of ``seed``) at the default size and position, cached per process (treat it as read-only)."""
    net = load(model, weights=weights, seed=seed, device="cpu")
    return radial_tuning_curve(net, layer, n_orientations=n_orientations, progress=False)
