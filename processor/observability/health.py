"""The worker's HTTP endpoint: ``/metrics``, ``/livez``, ``/readyz``.

Why the standard library's ``ThreadingHTTPServer`` on a daemon thread: the worker loop is one
blocking thread (a poll, a batch, or a changelog restore that can take minutes), and a probe
or a scrape must still be answered meanwhile, so the endpoint needs a thread of its own. It
serves three tiny read-only routes, so a web framework would add a dependency and nothing
else; the handlers only read values that are safe across threads (a ``threading.Event``, a
float, the prometheus-client registry, which locks itself). Each request gets its own thread,
so a slow scraper cannot hold up a kubelet probe; the threads are daemons, so the endpoint
never keeps a stopping worker alive.

Bounded, because anyone who can reach the port can open connections: a connection that sends
nothing for ``REQUEST_TIMEOUT_S`` is closed (100 half-sent requests would otherwise hold 100
threads for ever), and beyond ``MAX_CONNECTIONS`` at once a new one is closed at once. It binds
127.0.0.1 unless told otherwise (``NCD_HTTP_HOST``; the image and the manifests set 0.0.0.0
for the probes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from processor.observability.metrics import CONTENT_TYPE, Metrics

Check = Callable[[], bool]
#: Says why a check fails (a line of counts, never a value), for the body of the answer.
Detail = Callable[[], str]

#: A connection idle this long (a request not sent in full, a keep-alive left open) is closed.
REQUEST_TIMEOUT_S = 10.0
#: Connections served at once; more are closed at once (probes and a scraper need a few).
MAX_CONNECTIONS = 16


class _BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most ``max_connections`` connections at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, max_connections: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the cap: refuse rather than queue
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class HealthServer:
    """Serves the metrics and the probes of one worker until :meth:`stop`.

    ``port=0`` binds a free port (tests); :attr:`port` tells which. The CLI treats a
    configured port of 0 as "no endpoint" and does not create a server at all.
    """

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        live: Check,
        ready: Check,
        *,
        ready_detail: Detail | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        """``ready_detail`` says what readiness waits for (e.g. a restore's progress) in the
        body of a 503 from ``/readyz``."""
        handler = _handler(metrics, live, ready, ready_detail, timeout_s)
        self._server = _BoundedServer((host, port), handler, max_connections)
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


def _handler(
    metrics: Metrics, live: Check, ready: Check, ready_detail: Detail | None, timeout_s: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ncd-processor"
        timeout = timeout_s  # a socket timeout on every read and write of the connection

        def handle(self) -> None:
            try:
                super().handle()
            except (TimeoutError, ConnectionError):
                self.close_connection = True  # a client that stalls or goes: drop it quietly

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(HTTPStatus.OK, metrics.render(), CONTENT_TYPE)
            elif path == "/livez":
                self._probe(live())
            elif path == "/readyz":
                self._probe(ready(), ready_detail)
            else:
                self._reply(HTTPStatus.NOT_FOUND, b"not found\n")

        def _probe(self, ok: bool, detail: Detail | None = None) -> None:
            if ok:
                self._reply(HTTPStatus.OK, b"ok\n")
            else:
                why = "" if detail is None else f": {detail()}"
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, f"not ok{why}\n".encode())

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
