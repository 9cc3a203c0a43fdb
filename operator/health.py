"""The operator's HTTP endpoints (liveness, readiness, metrics), and the first contact with
the API server.

An operator that cannot reach the API server must say so at once, not sit Ready and silent
while every connection hangs: `wait_for_api` asks the API server for its version with short
timeouts, logs each failure as one line naming the address and the error (never a
traceback), retries with backoff, and only returns once the API answered. Meanwhile the
readiness endpoint (`--readiness`, the chart's readinessProbe) answers 503 with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from typing import TYPE_CHECKING

from aiohttp import web
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
    """The operator's one HTTP server (aiohttp, on the operator's event loop): liveness,
    readiness and `/metrics`, from `start` to `stop` (standing by and waiting for the API
    server included).

    - the liveness path (`--liveness URL`) answers 200 while the process serves;
    - the readiness path (`--readiness URL`) answers 503 with the reason until `ready()`;
    - `/metrics` answers the Prometheus exposition of `metrics`.

    Every path is served on every port named (the chart gives each its own); a port given
    twice is bound once. kopf's own liveness endpoint is not used: it would answer only
    once kopf runs, not while a replica stands by or waits for the API server.
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
        self._metrics = metrics
        self._app = web.Application()
        self._addresses: list[tuple[str, int]] = []
        for url, answer in ((liveness, self._alive), (readiness, self._readiness)):
            if url:
                where = urllib.parse.urlsplit(url)
                self._app.router.add_get(where.path or "/", answer)
                self._addresses.append((where.hostname or "0.0.0.0", where.port or 80))
        if metrics is not None:
            self._app.router.add_get("/metrics", self._scrape)
        if metrics_port is not None:
            self._addresses.append(("0.0.0.0", metrics_port))
        self._runner = web.AppRunner(self._app, access_log=None)
        self.ports: list[int] = []

    async def start(self) -> None:
        """Listen on every address named."""
        await self._runner.setup()
        for host, port in dict.fromkeys(self._addresses):
            await web.TCPSite(self._runner, host, port).start()
        self.ports = list(dict.fromkeys(address[1] for address in self._runner.addresses))

    async def stop(self) -> None:
        await self._runner.cleanup()

    def not_ready(self, reason: str) -> None:
        self._ready, self.reason = False, reason

    def ready(self) -> None:
        self._ready = True

    async def _alive(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readiness(self, _: web.Request) -> web.Response:
        if self._ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {self.reason}\n")

    async def _scrape(self, request: web.Request) -> web.Response:
        assert self._metrics is not None
        body, content_type = self._metrics.exposition(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})


def describe(error: Exception) -> str:
    """One line for a failed API request: the HTTP status, or the connection's own error."""
    if isinstance(error, k8s.ApiException):
        return f"HTTP {error.status} {error.reason}"
    if isinstance(error, MaxRetryError) and error.reason is not None:
        error = error.reason
    text = str(error)
    # urllib3 prefixes the connection object's repr: keep what the OS or TLS said.
    return text.split(">: ", 1)[-1] if ">: " in text else text or type(error).__name__


async def wait_for_api(
    configuration: k8s.Configuration,
    readiness: ProbeServer | None = None,
    sleep: float = FIRST_BACKOFF_S,
) -> None:
    """Return once the API server at `configuration.host` answers; log every failed try."""
    api = k8s.VersionApi(k8s.ApiClient(configuration))
    failures = 0
    while True:
        try:
            version = await asyncio.to_thread(api.get_code, _request_timeout=PROBE_TIMEOUT)
        except (k8s.ApiException, HTTPError, OSError) as error:
            failures += 1
            reason = f"cannot reach the API server at {configuration.host}: {describe(error)}"
            if readiness is not None:
                readiness.not_ready(reason)
            log.error("%s; retrying in %.0f s (attempt %d)", reason, sleep, failures)
            await asyncio.sleep(sleep)
            sleep = min(sleep * 2, MAX_BACKOFF_S)
            continue
        log.info("API server %s answers (Kubernetes %s)", configuration.host, version.git_version)
        if readiness is not None:
            readiness.ready()
        return
