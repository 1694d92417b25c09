"""Cutting a dataset of ``n`` items into contiguous index ranges, one per task of ``compute.engine``.

Sharded work (dataset scans, SAE activation collection) cuts ``range(n)`` at multiples of the batch size, so that
every shard reads the very batches the single pass reads and the merged result equals it exactly.

Example::

    >>> from mechscope.compute.ranges import shard_ranges
    >>> shard_ranges(10, 3), shard_ranges(100, 3, align=16)
    ([(0, 3), (3, 6), (6, 10)], [(0, 32), (32, 64), (64, 100)])
"""

from __future__ import annotations

from mechscope.errors import MechscopeError

__all__ = ["shard_ranges"]


def shard_ranges(n: int, shards: int, align: int = 1) -> list[tuple[int, int]]:
    """At most ``shards`` contiguous ``(start, stop)`` index ranges covering ``range(n)``, every boundary a multiple
    of ``align`` (a scan's batch size: each shard then reads the very batches the single pass reads), sizes as
    even as that allows, never an empty one.

    >>> shard_ranges(5, 8)
    [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    """
    for name, value in (("shards", shards), ("align", align)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise MechscopeError(f"{name} must be a positive int, got {value!r}")
    blocks = -(-n // align)
    shards = max(1, min(shards, blocks))
    bounds = [min(n, align * (blocks * i // shards)) for i in range(shards + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
