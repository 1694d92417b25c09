"""Serve a Microscope store over HTTP: every answer comes from ``site.page_for_path`` (the site's pages and the
store's own PNGs, nothing else), bound to 127.0.0.1 unless asked otherwise.

Requests are served concurrently, one daemon thread per connection, so a slow or stalled client holds only its own
thread; a connection that sends nothing for ``timeout`` seconds is dropped.  The store is read through a small pool
of open connections, each lent to one thread at a time (opening a store checks its integrity, which costs more
the larger it grows: ~9 ms at 1.6 MB, so not once per request).

Example::

    >>> import tempfile, threading, urllib.request
    >>> from mechscope.store import open_store
    >>> from mechscope.microscope.serve import make_server
    >>> root = tempfile.mkdtemp(); open_store(root).close()
    >>> server = make_server(root, port=0)
    >>> thread = threading.Thread(target=server.serve_forever, daemon=True); thread.start()
    >>> url = f"http://127.0.0.1:{server.server_address[1]}/"
    >>> urllib.request.urlopen(url).status
    200
    >>> server.shutdown(); server.server_close()
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mechscope.errors import MechscopeError
from mechscope.microscope.site import page_for_path
from mechscope.store import Store, open_store

TIMEOUT_S = 5.0
"""Seconds a connection may stay silent (mid-request or mid-response) before the server drops it."""
BACKLOG = 128
"""Connections the kernel queues before the server accepts them (``listen``'s backlog; http.server's default is 5,
with which connections of 16 concurrent clients overflowed it: ~1 s SYN retransmits, and some errors)."""


class StorePool:
    """Open read connections to one store, each lent to one thread at a time.

    A connection is opened with ``check_same_thread=False`` and only ever used by the thread that borrowed it, until
    it is returned: no two threads touch it at once, which is all a shared connection needs in SQLite's
    multi-thread and serialized modes (``sqlite3.threadsafety`` 1 or 3).  The other safe choice, one connection per
    thread, would open and integrity-check the store once per HTTP connection, since the server starts a thread for
    each.  At most ``keep`` idle connections are kept; the others are closed when returned.  Each query sees what a build has committed so far (autocommit, no long transaction).

    >>> import tempfile
    >>> pool = StorePool(tempfile.mkdtemp(), create=True)
    >>> with pool.lend() as store:
    ...     store.db.execute("PRAGMA user_version").fetchone()[0]
    1
    >>> pool.close()
    """

    def __init__(self, store_dir: str | os.PathLike, *, keep: int = 16, create: bool = False) -> None:
        self.store_dir = store_dir
        self.keep = keep
        self._idle: queue.LifoQueue[Store] = queue.LifoQueue()
        self._closed = False
        self._lock = threading.Lock()   # returning a connection vs closing the pool
        self._idle.put(open_store(store_dir, create=create, check_same_thread=False))  # refuse a bad store now

    @contextmanager
    def lend(self) -> Iterator[Store]:
        """A store connection for this thread alone until the ``with`` block ends."""
        try:
            store = self._idle.get_nowait()
        except queue.Empty:
            store = open_store(self.store_dir, create=False, check_same_thread=False)
        try:
            yield store
        finally:
            with self._lock:
                keep = not self._closed and self._idle.qsize() < self.keep
                if keep:
                    self._idle.put(store)
            if not keep:
                store.close()

    def close(self) -> None:
        """Close the idle connections (and those lent out, as they come back)."""
        with self._lock:
            self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def handler_class(pool: StorePool, *, timeout: float | None = TIMEOUT_S) -> type[BaseHTTPRequestHandler]:
    """The request handler: GET answers ``page_for_path`` from a store of ``pool`` (404 for anything else); a
    connection silent for ``timeout`` seconds is closed (``None``: never, as http.server's default)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
            path = self.path[1:] if self.path.startswith("/") else None
            try:
                with pool.lend() as store:
                    answer = page_for_path(store, path) if path is not None else None
            except MechscopeError:   # e.g. a unit the store does not hold
                answer = None
            if answer is None:
                self.send_error(404, "not a page of this Microscope")
                return
            body, content_type = answer
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # quiet: the CLI prints the URL once
            pass

    Handler.timeout = timeout
    return Handler


class MicroscopeServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with daemon threads (stopping never waits for a client), a deep listen backlog, a
    store pool closed with the server, and silence about clients that hang up or time out."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], pool: StorePool, *, timeout: float | None = TIMEOUT_S) -> None:
        self.pool = pool
        try:
            super().__init__(address, handler_class(pool, timeout=timeout))
        except BaseException:
            pool.close()
            raise

    def server_close(self) -> None:
        super().server_close()
        self.pool.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return   # the client went away or stalled: its business, not a server error
        super().handle_error(request, client_address)


def make_server(store_dir: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000,
                timeout: float | None = TIMEOUT_S) -> MicroscopeServer:
    """An HTTP server (not yet serving: call ``serve_forever``) for the store in ``store_dir``; ``port=0`` picks a
    free port (``server.server_address``).  Requests are answered concurrently, one daemon thread per connection;
    a connection silent for ``timeout`` seconds is dropped.  Raises ``MechscopeError`` for a missing or foreign
    store (now, not at the first request)."""
    return MicroscopeServer((host, port), StorePool(store_dir), timeout=timeout)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(store_dir: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000,
          announce: Callable[[str], None] = print, timeout: float | None = TIMEOUT_S) -> None:
    """Serve the store in ``store_dir`` until interrupted: Ctrl-C (SIGINT) or SIGTERM stop it cleanly, also when it
    was started with SIGINT ignored or blocked (a shell's background job, a CI script); ``announce(url)`` once it
    listens.  Requests are served as ``make_server`` serves them."""
    server = make_server(store_dir, host=host, port=port, timeout=timeout)
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, _interrupt) for s in stops}
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    announce(f"http://{server.server_address[0]}:{server.server_address[1]}/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        for s, handler in previous.items():
            signal.signal(s, handler)


__all__ = ["BACKLOG", "TIMEOUT_S", "MicroscopeServer", "StorePool", "handler_class", "make_server", "serve"]
