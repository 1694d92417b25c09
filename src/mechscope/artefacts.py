"""Artefacts on disk: atomic writes, and versioned ``.npz`` files of plain arrays (no pickles).

Everything mechscope saves goes through here, so nothing half-written is ever left behind: data goes to a
temporary file in the destination folder and is renamed into place once complete.

Example::

    >>> import numpy as np, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
    >>> _ = save_npz(path, {"x": np.arange(3)}, format=1)
    >>> load_npz(path, kind="demo", writer="save_npz", format=1, build=lambda d: d["x"].tolist())
    [0, 1, 2]
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mechscope.errors import MechscopeError

T = TypeVar("T")


def atomic_write_bytes(path: str | os.PathLike, data: bytes | Iterable[bytes], *, fsync: bool = False) -> None:
    """Write ``data`` (bytes, or an iterable of byte chunks streamed one by one) to ``path`` through a temporary
    file in the same folder and a rename; the folder is created when missing.  On any failure the temporary file
    is removed and ``path`` is left as it was.  ``fsync=True`` also flushes the data to disk before the rename
    (for large artefacts that are expensive to rebuild, e.g. a corpus).

    Example::

        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "sub" / "a.txt"
        >>> atomic_write_bytes(path, (b"one ", b"two"))
        >>> path.read_bytes(), [p.name for p in path.parent.iterdir()]
        (b'one two', ['a.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
                f.write(chunk)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, payload: Any, *, sort_keys: bool = False) -> Path:
    """``payload`` as indented JSON (two spaces, a final newline) at ``path``, through ``atomic_write_bytes``;
    returns the path.  The form of every JSON artefact mechscope writes for people to read (cards, results,
    reports).

    Example::

        >>> import tempfile, pathlib
        >>> path = atomic_write_json(pathlib.Path(tempfile.mkdtemp()) / "r.json", {"b": 1, "a": 2}, sort_keys=True)
        >>> print(path.read_text(), end="")
        {
          "a": 2,
          "b": 1
        }
    """
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=sort_keys) + "\n").encode("utf-8"))
    return path


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, format: int) -> Path:  # noqa: A002
    """Save ``arrays`` plus a ``format`` number to an ``.npz`` file, atomically."""
    path = Path(path)
    buf = io.BytesIO()
    np.savez(buf, format=np.array(format), **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_npz(
    path: str | os.PathLike, *, kind: str, writer: str, format: int, build: Callable[[Mapping[str, np.ndarray]], T]  # noqa: A002
) -> T:
    """Open an ``.npz`` written by ``save_npz``, check its ``format`` and ``build`` the object it holds.

    A missing, damaged or foreign file (wrong format, missing arrays) raises ``MechscopeError`` naming the
    ``kind`` of file and the ``writer`` function that makes one.
    """
    path = Path(path)
    if not path.is_file():
        raise MechscopeError(f"no {kind} file at {str(path)!r}; write one with {writer}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["format"]) != format:
                raise MechscopeError(f"{kind} file {str(path)!r} has format {int(data['format'])}; expected {format}")
            return build(data)
    except MechscopeError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file
        raise MechscopeError(f"cannot read {kind} file {str(path)!r} ({type(e).__name__}: {e}); "
                             f"expected an .npz written by {writer}") from e
