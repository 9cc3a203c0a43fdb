"""The operator's HTTP endpoints (liveness, readiness, metrics), and the first contact with
the API server.

An operator that cannot reach the API server must say so at once, not sit Ready and silent
while every connection hangs: `wait_for_api` asks the API server for its version with short
timeouts, logs each failure as one line naming the address and the error (never a
traceback), retries with backoff, and only returns once the API answered. Meanwhile the
readiness endpoint (`--readiness`, the chart's readinessProbe) answers 503 with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from kubernetes import client as k8s
from urllib3.exceptions import HTTPError, MaxRetryError

if TYPE_CHECKING:
    from kingest.operator.metrics import IngestionMetrics

log = logging.getLogger("kingest.operator")
# (connect, read) seconds: an API server that does not answer within these is unreachable.
PROBE_TIMEOUT = (3.0, 5.0)
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0


class ProbeServer:
    """The operator's one HTTP server: liveness, readiness and `/metrics`, from the start of
    the process to its end (standing by and waiting for the API server included).

    - the liveness path (`--liveness URL`) answers 200 while the process serves;
    - the readiness path (`--readiness URL`) answers 503 with the reason until `ready()`;
    - `/metrics` answers the Prometheus exposition of `metrics`.

    Every path is served on every port named (the chart gives each its own port); a port
    given twice is bound once.
    """

    def __init__(
        self,
        metrics: IngestionMetrics | None,
        liveness: str | None = None,
        readiness: str | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.reason = "starting"
        self._ready = False
        routes: dict[str, Callable[[str | None], tuple[int, str, bytes]]] = {}
        addresses: list[tuple[str, int]] = []
        for url, answer in ((liveness, self._alive), (readiness, self._readiness)):
            if url:
                where = urllib.parse.urlsplit(url)
                routes[where.path or "/"] = answer
                addresses.append((where.hostname or "", where.port or 80))
        if metrics is not None:

            def scrape(accept: str | None) -> tuple[int, str, bytes]:
                body, content_type = metrics.exposition(accept)
                return 200, content_type, body

            routes["/metrics"] = scrape
        if metrics_port is not None:
            addresses.append(("", metrics_port))
        handler = _handler(routes)
        self._servers = [ThreadingHTTPServer(a, handler) for a in dict.fromkeys(addresses)]
        self.ports = [server.server_address[1] for server in self._servers]
        for server in self._servers:
            server.daemon_threads = True
            name = f"probes-{server.server_address[1]}"
            threading.Thread(target=server.serve_forever, name=name, daemon=True).start()

    @staticmethod
    def _alive(_: str | None) -> tuple[int, str, bytes]:
        return 200, "text/plain; charset=utf-8", b"ok\n"

    def _readiness(self, _: str | None) -> tuple[int, str, bytes]:
        if self._ready:
            return 200, "text/plain; charset=utf-8", b"ready\n"
        return 503, "text/plain; charset=utf-8", f"not ready: {self.reason}\n".encode()

    def not_ready(self, reason: str) -> None:
        self._ready, self.reason = False, reason

    def ready(self) -> None:
        self._ready = True

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


def _handler(
    routes: dict[str, Callable[[str | None], tuple[int, str, bytes]]],
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = routes.get(self.path.split("?", 1)[0])
            if answer is None:
                self.send_error(404, f"served here: {', '.join(sorted(routes))}")
                return
            status, content_type, body = answer(self.headers.get("Accept"))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return  # a probe or scrape every few seconds is noise

    return Handler


def describe(error: Exception) -> str:
    """One line for a failed API request: the HTTP status, or the connection's own error."""
    if isinstance(error, k8s.ApiException):
        return f"HTTP {error.status} {error.reason}"
    if isinstance(error, MaxRetryError) and error.reason is not None:
        error = error.reason
    text = str(error)
    # urllib3 prefixes the connection object's repr: keep what the OS or TLS said.
    return text.split(">: ", 1)[-1] if ">: " in text else text or type(error).__name__


def wait_for_api(
    configuration: k8s.Configuration,
    readiness: ProbeServer | None = None,
    sleep: float = FIRST_BACKOFF_S,
) -> None:
    """Return once the API server at `configuration.host` answers; log every failed try."""
    api = k8s.VersionApi(k8s.ApiClient(configuration))
    failures = 0
    while True:
        try:
            version = api.get_code(_request_timeout=PROBE_TIMEOUT)
        except (k8s.ApiException, HTTPError, OSError) as error:
            failures += 1
            reason = f"cannot reach the API server at {configuration.host}: {describe(error)}"
            if readiness is not None:
                readiness.not_ready(reason)
            log.error("%s; retrying in %.0f s (attempt %d)", reason, sleep, failures)
            time.sleep(sleep)
            sleep = min(sleep * 2, MAX_BACKOFF_S)
            continue
        log.info("API server %s answers (Kubernetes %s)", configuration.host, version.git_version)
        if readiness is not None:
            readiness.ready()
        return
