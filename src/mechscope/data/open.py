"""Datasets by name: one string (``--dataset``) -> a dataset object with ``batches(batch_size, start=)``.

Accepted forms (``SPECS``):

* an existing folder -> ``ImageFolder(folder, size)`` (recursive; unreadable files skipped and counted);
* ``shapes:N`` or ``shapes:N:SEED`` -> the procedural shapes world, ``ShapesDataset(n=N, size=size, seed=SEED)``
  (``SEED`` defaults to 0), generated on the fly, no files needed.

Example::

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> from mechscope.data.open import open_dataset, parse_spec
    >>> root = pathlib.Path(tempfile.mkdtemp()); Image.new("RGB", (20, 20)).save(root / "a.png")
    >>> open_dataset(str(root), 16)
    ImageFolder(..., size=16, files=1)
    >>> parse_spec("shapes:500:3")
    ('shapes', {'n': 500, 'seed': 3})
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mechscope.errors import MechscopeError

SPECS = ("a folder of images (searched recursively)", "shapes:N", "shapes:N:SEED")
"""The accepted forms of a dataset spec, as shown in error messages."""

_SHAPES = re.compile(r"shapes:(\d+)(?::(\d+))?")


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``("folder", {"root": path})`` or ``("shapes", {"n": N, "seed": SEED})``; ``MechscopeError`` otherwise."""
    if not isinstance(spec, str) or not spec:
        raise MechscopeError(f"a dataset spec must be a non-empty string; accepted forms: {', '.join(SPECS)}")
    if spec.startswith("shapes:"):
        m = _SHAPES.fullmatch(spec)
        if not m or int(m.group(1)) < 1:
            raise MechscopeError(f"bad shapes dataset spec {spec!r}: write shapes:N or shapes:N:SEED with N >= 1 "
                                 "images and SEED >= 0 integers, e.g. shapes:1000 or shapes:1000:7")
        return "shapes", {"n": int(m.group(1)), "seed": int(m.group(2) or 0)}
    path = Path(spec)
    if path.is_dir():
        return "folder", {"root": path}
    what = "is a file, not a folder" if path.exists() else "is not an existing folder"
    raise MechscopeError(f"unknown dataset {spec!r}: it {what} nor a known form; accepted forms: {', '.join(SPECS)}")


def open_dataset(spec: str, size: int) -> Any:
    """The dataset named by ``spec`` with images ``[3, size, size]`` in ``[0, 1]`` (see the module docstring)."""
    kind, args = parse_spec(spec)
    if kind == "shapes":
        from mechscope.data.shapes import ShapesDataset  # the world is only imported when asked for

        return ShapesDataset(n=args["n"], size=size, seed=args["seed"])
    from mechscope.data.folders import ImageFolder

    return ImageFolder(args["root"], size)


__all__ = ["open_dataset", "parse_spec", "SPECS"]
