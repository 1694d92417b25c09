"""The two matplotlib chores every command that draws shares: a headless figure, and saving it as a PNG.

Example::

    >>> import tempfile, pathlib
    >>> from mechscope.plots import new_figure, save_figure
    >>> fig, ax = new_figure(figsize=(2, 2))
    >>> _ = ax.plot([0, 1], [1, 0])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = save_figure(fig, pathlib.Path(d) / "line.png")
    ...     path.read_bytes()[:4] == b"\\x89PNG"
    True
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def new_figure(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``plt.subplots(*args, **kwargs)`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig: Any, path: Path, dpi: int = 90, *, tight: bool = True) -> Path:
    """Write ``fig`` to ``path`` as a PNG (atomically; cropped to a tight bounding box unless ``tight=False``)
    and close it; returns ``path``.  Every figure the package writes to a file goes through here."""
    import matplotlib.pyplot as plt

    from mechscope.artefacts import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    atomic_write_bytes(path, buf.getvalue())
    plt.close(fig)   # pyplot keeps every figure alive until closed
    return path


def agg_figure(width: float, height: float, layout: str | None = "tight") -> Any:
    """A matplotlib ``Figure`` of ``width x height`` inches on its own Agg canvas, not registered with pyplot
    (nothing to close, no global state: safe in worker processes and threads)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def png_of(fig: Any, dpi: int = 80) -> bytes:
    """The PNG bytes of ``fig`` (as drawn, no bounding-box trimming)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
