"""Serve a Microscope store over HTTP: every answer comes from ``site.page_for_path`` (the site's pages and the
store's own PNGs, nothing else), bound to 127.0.0.1 unless asked otherwise.

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
import signal
import threading
from collections.abc import Callable
from typing import Any
from http.server import BaseHTTPRequestHandler, HTTPServer

from mechscope.errors import MechscopeError
from mechscope.microscope.site import page_for_path
from mechscope.store import open_store


def make_server(store_dir: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000) -> HTTPServer:
    """An HTTP server (not yet serving: call ``serve_forever``) for the store in ``store_dir``; ``port=0`` picks a
    free port (``server.server_address``).  Requests are answered one at a time; each opens the store for its own
    duration (an SQLite connection belongs to the thread that made it, and the store stays readable while a build
    adds to it)."""
    open_store(store_dir, create=False).close()   # refuse a missing or foreign store now, not at the first request

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
            path = self.path[1:] if self.path.startswith("/") else None
            try:
                with open_store(store_dir, create=False) as store:
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

    return HTTPServer((host, port), Handler)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(store_dir: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000,
          announce: Callable[[str], None] = print) -> None:
    """Serve the store in ``store_dir`` until interrupted: Ctrl-C (SIGINT) or SIGTERM stop it cleanly, also when it
    was started with SIGINT ignored or blocked (a shell's background job, a CI script); ``announce(url)`` once it
    listens."""
    server = make_server(store_dir, host=host, port=port)
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


__all__ = ["make_server", "serve"]
