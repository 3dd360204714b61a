"""The worker's HTTP endpoint: ``/metrics``, ``/livez``, ``/readyz``.

Why the standard library's ``ThreadingHTTPServer`` on a daemon thread: the worker loop is one
blocking thread (a poll, a batch, or a changelog restore that can take minutes), and a probe
or a scrape must still be answered meanwhile, so the endpoint needs a thread of its own. It
serves three tiny read-only routes, so a web framework would add a dependency and nothing
else; the handlers only read values that are safe across threads (a ``threading.Event``, a
float, the prometheus-client registry, which locks itself). Each request gets its own thread,
so a slow scraper cannot hold up a kubelet probe; the threads are daemons, so the endpoint
never keeps a stopping worker alive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from processor.observability.metrics import CONTENT_TYPE, Metrics

Check = Callable[[], bool]


class HealthServer:
    """Serves the metrics and the probes of one worker until :meth:`stop`.

    ``port=0`` binds a free port (tests); :attr:`port` tells which. The CLI treats a
    configured port of 0 as "no endpoint" and does not create a server at all.
    """

    def __init__(self, host: str, port: int, metrics: Metrics, live: Check, ready: Check) -> None:
        handler = _handler(metrics, live, ready)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ncd-health", daemon=True
        )

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        """Start serving on a daemon thread; returns ``self``."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def _handler(metrics: Metrics, live: Check, ready: Check) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ncd-processor"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(HTTPStatus.OK, metrics.render(), CONTENT_TYPE)
            elif path == "/livez":
                self._probe(live())
            elif path == "/readyz":
                self._probe(ready())
            else:
                self._reply(HTTPStatus.NOT_FOUND, b"not found\n")

        def _probe(self, ok: bool) -> None:
            if ok:
                self._reply(HTTPStatus.OK, b"ok\n")
            else:
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, b"not ok\n")

        def _reply(
            self, status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8"
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet: probes every few seconds would drown the worker's log."""

    return Handler
