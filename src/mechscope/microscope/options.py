"""What ``mechscope.microscope.build`` computes for an image model's units, as five option objects:

* ``Evidence``: the per-unit figures (feature visualization and its settings, negative, diversity set, tuning);
* ``Links``: the circuit links (``{layer: earlier_layer}`` and how many upstream units per unit);
* ``FeatureUse``: per unit, what ablating it costs each task (shapes-world organisms);
* ``Partners``: per unit, the most similar units of another network (universality);
* ``DatasetEvidence``: dataset examples, statistics and distributions from a dataset (and the top example's
  attribution where the layer has links).

Each checks its values when made, saying what is valid.

Example::

    >>> Evidence(steps=64, diversity=4)
    Evidence(steps=64, size=None, seed=0, negative=True, tuning=True, diversity=4)
    >>> Links({"mixed3b": "mixed3a"}, k=2).k
    2
    >>> Evidence(diversity=1)
    Traceback (most recent call last):
    ...
    mechscope.errors.MechscopeError: diversity is the size of each unit's diversity set, 0 (none) or >= 2, not 1
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mechscope.errors import MechscopeError

DEFAULT_SIZE = 128
EXAMPLES_K = 8


@dataclass(frozen=True)
class Evidence:
    """The figures computed per unit.

    ``steps``, ``size``, ``seed``: of the feature visualizations (``size`` in pixels, default ``DEFAULT_SIZE``, is
    also the input size of the expanded weights and tuning stimuli); ``negative``: also the negative feature
    visualizations (same batch); ``tuning``: radial tuning curves (layers without spatial maps are skipped);
    ``diversity``: with ``n >= 2``, ``n`` images per unit pushed apart by Lucid's diversity penalty (a second batch,
    about ``n`` feature visualizations more).
    """

    steps: int = 128
    size: int | None = None
    seed: int | None = 0
    negative: bool = True
    tuning: bool = True
    diversity: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise MechscopeError(f"featvis steps must be an integer >= 1, not {self.steps!r}")
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1):
            raise MechscopeError(f"size is the input size in pixels, an integer >= 1 or None, not {self.size!r}")
        if not isinstance(self.diversity, int) or self.diversity < 0 or self.diversity == 1:
            raise MechscopeError(f"diversity is the size of each unit's diversity set, 0 (none) or >= 2, "
                                 f"not {self.diversity}")

    @property
    def pixels(self) -> int:
        """``size``, or ``DEFAULT_SIZE`` when it is ``None``."""
        return DEFAULT_SIZE if self.size is None else self.size


@dataclass(frozen=True)
class Links:
    """Circuit links: each unit of ``layer`` to its ``k`` strongest units of ``upstream[layer]`` (``upstream``
    figures) and those back to it (``downstream`` figures); with a dataset, the top example's attribution is taken
    over the upstream layer."""

    upstream: Mapping[str, str] = field(default_factory=dict)
    k: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise MechscopeError(f"k is the number of upstream units to keep, at least 1 (got {self.k!r})")
        if not isinstance(self.upstream, Mapping):
            raise MechscopeError(f"upstream is a mapping {{layer: earlier_layer}}, not {type(self.upstream).__name__}")


@dataclass(frozen=True)
class DatasetEvidence:
    """Top/bottom dataset examples (``examples_k`` each), statistics and activation distributions from ``dataset``
    (``ImageFolder``, ``ShapesDataset``, anything ``vision.evidence.scan.scan`` reads).  ``name`` (e.g.
    ``"shapes:1024"``, default the dataset's type name) is recorded so that a rebuild with the same dataset skips
    the scan."""

    dataset: Any
    name: str | None = None
    examples_k: int = EXAMPLES_K

    def __post_init__(self) -> None:
        if isinstance(self.examples_k, bool) or not isinstance(self.examples_k, int) or self.examples_k < 1:
            raise MechscopeError(f"examples_k must be at least 1, not {self.examples_k!r}")

    @property
    def label(self) -> str:
        """``name``, or the dataset's type name."""
        return self.name or type(self.dataset).__name__


@dataclass(frozen=True)
class FeatureUse:
    """Per unit, what ablating it alone costs each task of the shapes world (``ablation`` figures): the held-out
    accuracy drop on ``images`` items of the world the organism's card holds out, ``mode`` ``"zero"`` or
    ``"mean"`` (``vision.circuits.feature_use.unit_ablation_table``).  For shapes-world organisms only."""

    images: int = 300
    mode: str = "zero"

    def __post_init__(self) -> None:
        if isinstance(self.images, bool) or not isinstance(self.images, int) or self.images < 1:
            raise MechscopeError(f"images is a number of held-out images, at least 1 (got {self.images!r})")
        if self.mode not in ("zero", "mean"):
            raise MechscopeError(f"mode is 'zero' or 'mean', not {self.mode!r}")


@dataclass(frozen=True)
class Partners:
    """Per unit, its ``k`` most correlated units of another zoo network ``model`` at ``layer`` (default: the layer
    of the same name) (``partner`` figures, linked when that network's units are in the store): activation
    correlation over every position of ``images`` items of the shapes world
    (``vision.families.universality.activation_correlations``; maps of different sizes are compared by their
    spatial means)."""

    model: str
    images: int = 256
    k: int = 3
    layer: str | None = None

    def __post_init__(self) -> None:
        for name in ("images", "k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MechscopeError(f"{name} must be at least 1 (got {value!r})")


__all__ = ["Evidence", "Links", "DatasetEvidence", "FeatureUse", "Partners", "DEFAULT_SIZE", "EXAMPLES_K"]
