"""What every trained organism's card records about the run that made it.

Example::

    >>> import tempfile, time
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     (Path(d) / "w.safetensors").write_bytes(b"weights")
    ...     record = training_record(time.perf_counter(), [{"step": 2, "seconds": 0.5}], 1, Path(d) / "w.safetensors")
    7
    >>> record["train_seconds_total"], record["final_train_metrics"], record["machine"]["threads"]
    (0.5, {'step': 2, 'seconds': 0.5}, 1)
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import torch

from mechscope.zoo.weights import sha256_file


def training_record(start: float, log: list[dict[str, Any]], threads: int, weights: Path) -> dict[str, Any]:
    """The card's run fields: wall seconds this session (since ``start``, a ``time.perf_counter()``) and in total
    (the log's last row, which a resumed run carries on), the last logged metrics, the machine and its threads,
    and the sha256 of the ``weights`` file written."""
    return {"train_seconds_this_session": round(time.perf_counter() - start, 1),
            "train_seconds_total": log[-1]["seconds"] if log else None,
            "final_train_metrics": log[-1] if log else None,
            "machine": {"cpu": platform.processor() or platform.machine(), "threads": threads,
                        "torch": torch.__version__},
            "sha256": sha256_file(weights)}
