"""Readiness, and the first contact with the API server.

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubernetes import client as k8s
from urllib3.exceptions import HTTPError, MaxRetryError

log = logging.getLogger("kingest.operator")
# (connect, read) seconds: an API server that does not answer within these is unreachable.
PROBE_TIMEOUT = (3.0, 5.0)
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0


class Readiness:
    """Serves `GET <path>`: 200 once `ready()` was called, else 503 with why not."""

    def __init__(self, url: str) -> None:
        where = urllib.parse.urlsplit(url)
        self.path = where.path or "/"
        self.reason = "starting"
        self._ready = False
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != state.path:
                    self.send_error(404)
                    return
                body = ("ready\n" if state._ready else f"not ready: {state.reason}\n").encode()
                self.send_response(200 if state._ready else 503)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                return  # a probe every few seconds is noise

        self._server = ThreadingHTTPServer((where.hostname or "", where.port or 80), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="readiness", daemon=True).start()

    def not_ready(self, reason: str) -> None:
        self._ready, self.reason = False, reason

    def ready(self) -> None:
        self._ready = True

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


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
    readiness: Readiness | None = None,
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
