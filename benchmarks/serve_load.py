"""Requests/s and latency of the Microscope server under load, concurrent vs single-threaded, side by side.

Loopback load: ``--clients`` threads send ``--requests`` GETs (one connection each, as http.server answers
HTTP/1.0) over the pages and PNGs of a small store built here, with and without a stalled client (one that sends
half a request and waits).  The server runs in its own process.  Servers compared, on the same store and the same handler code:

* ``concurrent``: ``mechscope.microscope.serve.make_server`` (threads, 5 s timeout, backlog 128, store pool);
* ``single``: ``http.server.HTTPServer`` with the same handler and no timeout (the old serving loop);
* ``before``: ``single`` that also opens the store for each request, as the server did before this change.

With the stall, the single-threaded servers cannot answer anyone while the stalled client holds them, so the
stalled client leaves after ``--stall-seconds`` (without that the run would never end); the concurrent server
keeps it for the whole run.

Run: ``.venv/bin/python benchmarks/serve_load.py [--clients 16] [--requests 1000] [--rounds 3]``
Writes ``benchmarks/results/serve_load.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import HTTPServer
from pathlib import Path

import torch

from _common import machine, write
from mechscope.microscope.serve import StorePool, handler_class, make_server
from mechscope.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the repository root: the tests' store builder
from tests.microscope.paged_store import build_paged_store  # noqa: E402

HALF_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: stall"


def build(root: Path, layers: dict[str, int]) -> list[str]:
    """A store of 32 px feature-visualization PNGs, ``layers`` = {layer: units}; returns the site paths."""
    return build_paged_store(root, layers, px=32)


class PerRequest:
    """The old store access: open (and integrity-check) the store for every request."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextlib.contextmanager
    def lend(self):
        with open_store(self.root, create=False) as store:
            yield store

    def close(self) -> None:
        pass


class Quiet(HTTPServer):
    def handle_error(self, request, client_address) -> None:   # clients that gave up: counted on their side
        pass


def _serve_child(kind: str, root: Path, ports) -> None:
    """In the server process: serve ``kind`` on a free port, sending the port back, until terminated."""
    torch.set_num_threads(1)
    if kind == "concurrent":
        server = make_server(root, port=0)
    else:
        pool = StorePool(root) if kind == "single" else PerRequest(root)
        server = Quiet(("127.0.0.1", 0), handler_class(pool, timeout=None))
    ports.put(server.server_address[1])
    server.serve_forever()


@contextlib.contextmanager
def serving(kind: str, root: Path):
    """A server of ``kind`` in its own process (so that the client threads do not share its interpreter lock, as a
    browser would not) -> its base URL and port."""
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=_serve_child, args=(kind, root, ports), daemon=True)
    proc.start()
    try:
        port = ports.get(timeout=120)
        yield f"http://127.0.0.1:{port}/", port
    finally:
        proc.terminate()
        proc.join(10)


def fetch(url: str, timeout: float) -> tuple[float, bytes | None, str | None]:
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            body = answer.read()
        return time.perf_counter() - start, body, None
    except Exception as e:   # counted and reported, not raised: the old servers are expected to fail some
        return time.perf_counter() - start, None, type(e).__name__


def load(kind: str, root: Path, paths: list[str], expected: dict[str, bytes], *, clients: int, requests: int,
         stall: bool, stall_seconds: float, client_timeout: float) -> dict:
    stalled = None
    with serving(kind, root) as (base, port):
        if stall:
            stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
            stalled.sendall(HALF_REQUEST)
            time.sleep(0.1)   # the server has taken the stalled connection before the load starts
            if kind != "concurrent":
                threading.Timer(stall_seconds, stalled.close).start()
        work = [paths[i % len(paths)] for i in range(requests)]
        begin = time.perf_counter()
        with ThreadPoolExecutor(clients) as ex:
            got = list(ex.map(lambda p: (p, fetch(base + p, client_timeout)), work))
        seconds = time.perf_counter() - begin
        if stalled is not None:
            stalled.close()
    latencies = sorted(t for _, (t, _, _) in got)
    errors: dict[str, int] = {}
    for _, (_, _, err) in got:
        if err:
            errors[err] = errors.get(err, 0) + 1
    wrong = sum(1 for p, (_, body, err) in got if err is None and body != expected[p])
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"seconds": seconds, "requests_per_s": requests / seconds, "p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3,
            "max_ms": latencies[-1] * 1e3, "errors": errors, "error_rate": sum(errors.values()) / requests,
            "wrong_bodies": wrong}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the runs without a stall")
    parser.add_argument("--stall-seconds", type=float, default=5.0)
    parser.add_argument("--client-timeout", type=float, default=30.0)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)

    layers = {"conv2d0": 64, "mixed3a": 32}
    kinds = ("concurrent", "single", "before")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        paths = build(root, layers)
        with serving("concurrent", root) as (base, _):
            expected = {p: fetch(base + p, 30)[1] for p in paths}
        assert all(b is not None for b in expected.values())
        opened = []
        for _ in range(20):
            t = time.perf_counter()
            open_store(root, create=False).close()
            opened.append(time.perf_counter() - t)
        index_bytes = (root / "index.sqlite").stat().st_size
        kw = dict(clients=args.clients, requests=args.requests, stall_seconds=args.stall_seconds,
                  client_timeout=args.client_timeout)
        rounds = {k: [] for k in kinds}
        for r in range(args.rounds):
            for k in kinds:
                rounds[k].append(load(k, root, paths, expected, stall=False, **kw))
                print(f"round {r + 1} {k:10s} {rounds[k][-1]['requests_per_s']:7.0f} req/s  "
                      f"p99 {rounds[k][-1]['p99_ms']:7.1f} ms  errors {rounds[k][-1]['errors']}")
        stalled = {}
        for k in kinds:
            stalled[k] = load(k, root, paths, expected, stall=True, **kw)
            print(f"stalled    {k:10s} {stalled[k]['requests_per_s']:7.0f} req/s  "
                  f"p99 {stalled[k]['p99_ms']:7.1f} ms  errors {stalled[k]['errors']}")

    def median(k: str, key: str) -> float:
        return statistics.median(x[key] for x in rounds[k])

    ratios = {f"concurrent_vs_{k}": {
        "requests_per_s": statistics.median(a["requests_per_s"] / b["requests_per_s"]
                                            for a, b in zip(rounds["concurrent"], rounds[k])),
        "p99": statistics.median(a["p99_ms"] / b["p99_ms"] for a, b in zip(rounds["concurrent"], rounds[k])),
        "stalled_requests_per_s": stalled["concurrent"]["requests_per_s"] / stalled[k]["requests_per_s"],
        "stalled_p99": stalled["concurrent"]["p99_ms"] / stalled[k]["p99_ms"]} for k in kinds[1:]}
    summary = {k: {"requests_per_s": median(k, "requests_per_s"), "p50_ms": median(k, "p50_ms"),
                   "p99_ms": median(k, "p99_ms"), "errors": sum(sum(x["errors"].values()) for x in rounds[k])}
               for k in kinds}
    path = write("serve_load", {
        "benchmark": "serve_load", "machine": {**machine(), "load_average_1_5_15": list(os.getloadavg())},
        "setup": {"clients": args.clients, "requests": args.requests, "rounds": args.rounds,
                  "stall_seconds_single": args.stall_seconds, "client_timeout_s": args.client_timeout,
                  "store": {"layers": layers, "paths": len(paths), "index_bytes": index_bytes},
                  "servers": {"concurrent": "make_server: ThreadingHTTPServer, daemon threads, 5 s timeout, "
                                            "backlog 128, pooled store connections",
                              "single": "http.server.HTTPServer, same handler, no timeout",
                              "before": "single, opening the store per request (the server before this change)"}},
        "open_store_ms_median": statistics.median(opened) * 1e3,
        "summary_median_of_rounds": summary, "ratios": ratios, "rounds": rounds, "stalled": stalled,
        "note": args.note,
    })
    for k in kinds:
        s = summary[k]
        print(f"{k:10s} {s['requests_per_s']:7.0f} req/s  p50 {s['p50_ms']:6.1f} ms  p99 {s['p99_ms']:7.1f} ms  "
              f"| stalled: {stalled[k]['requests_per_s']:7.0f} req/s  p99 {stalled[k]['p99_ms']:7.1f} ms  "
              f"errors {sum(stalled[k]['errors'].values())}")
    for name, r in ratios.items():
        print(f"{name}: {r['requests_per_s']:.2f}x req/s, p99 {r['p99']:.2f}x; stalled: "
              f"{r['stalled_requests_per_s']:.1f}x req/s, p99 {r['stalled_p99']:.3f}x")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
