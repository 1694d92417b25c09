"""compute.engine without a cluster: the in-process map, the choice of engine (RAY_ADDRESS honoured) and its
errors.  The Ray engine itself runs on a real local cluster in tests/microscope/test_build_ray.py."""

from __future__ import annotations

import socket
import sys

import pytest

from mechscope.compute.engine import InProcess, engine
from mechscope.errors import MechscopeError


def _closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scaled(shared, task):
    shared["calls"].append(task)
    return shared["factor"] * task


def test_in_process_map_yields_every_index_once_in_order_with_the_shared_object():
    shared = {"factor": 3, "calls": []}
    got = list(InProcess().map(_scaled, [5, 1, 4], shared=shared))
    assert got == [(0, 15), (1, 3), (2, 12)]
    assert shared["calls"] == [5, 1, 4]          # the very object, not a copy per task
    assert list(InProcess().map(_scaled, [], shared=shared)) == []
    assert InProcess().workers == 1


def test_in_process_map_is_lazy_and_propagates_errors():
    def boom(shared, task):
        if task == 2:
            raise ValueError("task 2")
        return task

    results = InProcess().map(boom, [1, 2, 3])
    assert next(results) == (0, 1)
    with pytest.raises(ValueError, match="task 2"):
        next(results)


def test_without_an_address_the_engine_is_in_process(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert isinstance(engine(None), InProcess)
    monkeypatch.setenv("RAY_ADDRESS", "")
    assert isinstance(engine(None), InProcess)


def test_ray_address_is_honoured_and_an_unreachable_one_named(monkeypatch):
    pytest.importorskip("ray")
    port = _closed_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(MechscopeError, match=rf"127\.0\.0\.1:{port}.*nothing answers"):
        engine(None)                              # it went for $RAY_ADDRESS, not in-process
    other = _closed_port()
    with pytest.raises(MechscopeError, match=rf"ray://127\.0\.0\.1:{other}"):
        engine(f"ray://127.0.0.1:{other}")        # an explicit address wins over the variable


def test_bad_addresses_and_a_missing_ray_package(monkeypatch):
    for bad in ("  ", 7):
        with pytest.raises(MechscopeError, match="a Ray address is"):
            engine(bad)
    monkeypatch.setitem(sys.modules, "ray", None)   # as if the extra were not installed
    with pytest.raises(MechscopeError, match=r"pip install 'mechscope\[ray\]'"):
        engine("127.0.0.1:1")
