"""The Microscope server under load: 16 client threads, 1,000 requests over pages and PNGs, while another client
holds a half-sent request open; and a stalled client is dropped after the timeout while others are served."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from mechscope.microscope.serve import make_server
from tests.microscope.paged_store import build_paged_store

CLIENTS = 16
REQUESTS = 1_000
LAYERS = {"conv": 6, "mixed": 4}   # layer -> units, each with a feature visualization
HALF_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: stall"   # no end of line, no blank line


def _build(root) -> list[str]:
    """A small store of real PNGs; returns the site paths a reader would fetch (pages and PNGs)."""
    return build_paged_store(root, LAYERS)


def _serve(root, **kw):
    server = make_server(root, port=0, **kw)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read()


def _stall(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(HALF_REQUEST)
    return s


def _still_open(s: socket.socket) -> bool:
    """No answer and no end-of-stream yet on ``s`` (the server still holds the connection)."""
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    finally:
        s.setblocking(True)


def test_thousand_requests_from_sixteen_clients_beside_a_stalled_one(tmp_path):
    paths = _build(tmp_path / "store")
    # a timeout longer than the test: the stalled client holds its server thread all along, so what keeps the
    # others served is concurrency, not the timeout
    server, base = _serve(tmp_path / "store", timeout=60)
    try:
        expected = {p: _get(base + p) for p in paths}      # one request at a time, before any load
        assert all(status == 200 for status, _ in expected.values())
        assert expected[paths[-1]][1].startswith(b"\x89PNG") and b"conv" in expected[""][1]
        stalled = _stall(server.server_address[1])
        work = [paths[i % len(paths)] for i in range(REQUESTS)]
        start = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            got = list(pool.map(lambda p: (p, _get(base + p)), work))   # an error here fails the test
        seconds = time.perf_counter() - start
        wrong = [p for p, answer in got if answer != expected[p]]
        assert len(got) == REQUESTS and wrong == [], wrong[:5]
        assert _still_open(stalled), "the stalled client was dropped before the load ended"
        stalled.close()
        print(f"{REQUESTS} requests from {CLIENTS} clients beside a stalled one: {seconds:.2f} s, "
              f"{REQUESTS / seconds:.0f} requests/s")
    finally:
        server.shutdown()
        server.server_close()


def test_a_stalled_client_is_dropped_after_the_timeout_while_others_are_served(tmp_path):
    paths = _build(tmp_path / "store")
    timeout = 2.0
    server, base = _serve(tmp_path / "store", timeout=timeout)
    try:
        stalled = _stall(server.server_address[1])
        start = time.perf_counter()
        status, body = _get(base + paths[3])   # a unit page, while the stalled client holds its connection
        served_after = time.perf_counter() - start
        assert status == 200 and b"conv" in body
        assert served_after < timeout and _still_open(stalled)
        stalled.settimeout(timeout + 10)
        assert stalled.recv(1024) == b""       # the server hangs up: end of stream, no answer
        dropped_after = time.perf_counter() - start
        assert timeout - 0.1 <= dropped_after < timeout + 5, dropped_after
        stalled.close()
    finally:
        server.shutdown()
        server.server_close()


def test_store_pool_lends_a_connection_to_one_thread_at_a_time_and_reuses_it(tmp_path):
    from mechscope.microscope.serve import StorePool
    from mechscope.store import read_rows

    _build(tmp_path / "store")
    pool = StorePool(tmp_path / "store", keep=2)
    with pool.lend() as a, pool.lend() as b, pool.lend() as c:
        assert len({id(a), id(b), id(c)}) == 3          # held at once: never the same connection
    with pool.lend() as again:
        assert again in (a, b, c)                        # returned ones are reused (two of three kept)
    seen = []
    worker = threading.Thread(target=lambda: seen.append(len(read_rows(again, "figures"))))
    worker.start()                                       # usable from a thread other than the opener's
    worker.join()
    assert seen == [sum(LAYERS.values())]
    pool.close()
    with pytest.raises(sqlite3.ProgrammingError):        # closed with the pool
        again.db.execute("SELECT 1")


def test_the_old_single_threaded_server_would_have_blocked(tmp_path):
    """The same stall against a server without concurrency keeps a second client waiting (the bug fixed here)."""
    from http.server import HTTPServer

    from mechscope.microscope.serve import StorePool, handler_class

    paths = _build(tmp_path / "store")
    pool = StorePool(tmp_path / "store")
    class Quiet(HTTPServer):
        def handle_error(self, request, client_address):   # the abandoned request's broken pipe, expected
            pass

    server = Quiet(("127.0.0.1", 0), handler_class(pool, timeout=None))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stalled = _stall(server.server_address[1])
        time.sleep(0.2)   # let the server take the stalled connection first
        with pytest.raises(OSError):   # TimeoutError (urllib may wrap it in URLError, also an OSError)
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/{paths[3]}",
                                        timeout=0.5) as answer:
                answer.read()
        stalled.close()
    finally:
        server.shutdown()
        server.server_close()
        pool.close()
