"""Where independent tasks run: in this process, or on a Ray cluster (the ``ray`` extra).

Every fan-out in mechscope (the Microscope build's slices of units, sharded dataset scans, SAE activation
collection) goes through one call: ``engine.map(fn, tasks, shared)`` yields ``(i, fn(shared, tasks[i]))`` for every
task as it finishes, in any order.  ``fn`` must be a module-level function (Ray pickles it by reference);
``shared`` (weights, options) travels to the object store once, not with each task.  The caller, the *driver*, is
the only one that writes results (the store, PNGs): Ray may run a task twice when a worker dies, but each index
is yielded once, so nothing is lost or written twice.

``engine(None)`` is ``InProcess()`` unless ``RAY_ADDRESS`` is set; ``engine("auto")`` or ``engine("HOST:PORT")``
connects to that Ray cluster.

Example::

    >>> from mechscope.compute.engine import engine
    >>> def square(shared, x):
    ...     return shared * x * x
    >>> sorted(engine(None).map(square, [1, 2, 3], shared=10))
    [(0, 10), (1, 40), (2, 90)]
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mechscope.errors import MechscopeError

__all__ = ["Engine", "InProcess", "RayEngine", "engine", "RAY_INSTALL"]

RAY_INSTALL = "pip install 'mechscope[ray]'"


class Engine(Protocol):
    """Runs ``fn(shared, task)`` for each task; ``workers`` is how many run at once (for slicing work)."""

    name: str
    workers: int

    def map(self, fn: Callable[[Any, Any], Any], tasks: Sequence[Any], shared: Any = None
            ) -> Iterator[tuple[int, Any]]: ...


@dataclass
class InProcess:
    """Every task in this process, in order (the default: no fan-out, no pickling)."""

    name: str = "in-process"
    workers: int = 1

    def map(self, fn: Callable[[Any, Any], Any], tasks: Sequence[Any], shared: Any = None
            ) -> Iterator[tuple[int, Any]]:
        for i, task in enumerate(tasks):
            yield i, fn(shared, task)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise MechscopeError(f"a Ray cluster needs the ray package ({e}); install it with {RAY_INSTALL}") from None
    return ray


def _call(fn: Callable[[Any, Any], Any], shared: Any, task: Any, threads: int) -> Any:
    import torch
    torch.set_num_threads(threads)      # one task per CPU Ray grants it; torch would take every core of the node
    return fn(shared, task)


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail at once, naming ``address``, when nothing listens at a ``HOST:PORT`` / ``ray://HOST:PORT`` address
    (``ray.init`` would retry for minutes).  ``"auto"`` is left to Ray."""
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as e:
        raise MechscopeError(f"cannot connect to the Ray cluster at {address!r}: nothing answers at {host}:{port} "
                             f"({e}); start one with `ray start --head --port {port}` or give another address"
                             ) from None


class RayEngine:
    """Tasks on a Ray cluster at ``address`` (``"auto"``, ``"HOST:PORT"``, ``"ray://..."``); ``cpus_per_task`` CPUs
    (and torch threads) per task; ``max_retries``: how often Ray reruns a task whose worker died."""

    name = "ray"

    def __init__(self, address: str, cpus_per_task: int = 1, max_retries: int = 3) -> None:
        ray = _import_ray()
        _check_reachable(address)
        if not ray.is_initialized():
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise MechscopeError(f"cannot connect to the Ray cluster at {address!r}: {e}") from None
        self._ray = ray
        self.address = address
        self.cpus_per_task = int(cpus_per_task)
        self.max_retries = int(max_retries)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // self.cpus_per_task)
        self._remote = ray.remote(num_cpus=self.cpus_per_task, max_retries=self.max_retries)(_call)

    def map(self, fn: Callable[[Any, Any], Any], tasks: Sequence[Any], shared: Any = None
            ) -> Iterator[tuple[int, Any]]:
        ray = self._ray
        shared_ref = ray.put(shared)                  # once, whatever the number of tasks
        pending = {self._remote.remote(fn, shared_ref, task, self.cpus_per_task): i for i, task in enumerate(tasks)}
        seen: set[int] = set()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                result = ray.get(ref)
                if i not in seen:                      # each index once, whatever Ray retried
                    seen.add(i)
                    yield i, result


def engine(ray: str | None = None, cpus_per_task: int = 1) -> Engine:
    """``InProcess()`` when ``ray`` is None and ``RAY_ADDRESS`` is unset; otherwise a ``RayEngine`` connected to
    ``ray`` (or ``$RAY_ADDRESS``)."""
    address = ray if ray is not None else os.environ.get("RAY_ADDRESS") or None
    if address is None:
        return InProcess()
    if not isinstance(address, str) or not address.strip():
        raise MechscopeError(f"a Ray address is 'auto', 'HOST:PORT' or 'ray://HOST:PORT', got {address!r}")
    return RayEngine(address.strip(), cpus_per_task=cpus_per_task)
