"""The operator's one HTTP server: liveness, readiness and /metrics over real HTTP."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kingest.operator.health import ProbeServer
from kingest.operator.metrics import IngestionMetrics
from tests.platform.processes import free_port


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


async def aget(port: int, path: str) -> tuple[int, str, str]:
    """`get`, off the loop that serves it."""
    return await asyncio.to_thread(get, port, path)


def test_one_server_answers_liveness_readiness_and_metrics_and_nothing_else() -> None:
    metrics = IngestionMetrics()
    metrics.record_run(
        ("ns", "a"), "a-1", succeeded=True, finished_at=1.0, duration_s=2.0, rows=5, bytes_loaded=7
    )
    port = free_port()
    probes = ProbeServer(
        metrics, f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{port}/readyz"
    )

    async def scenario() -> None:
        await probes.start()
        try:
            assert probes.ports == [port]
            assert (await aget(port, "/healthz"))[0] == 200
            probes.not_ready("cannot reach the API server at https://10.0.0.1")
            status, _, body = await aget(port, "/readyz")
            assert status == 503 and "https://10.0.0.1" in body
            probes.ready()
            assert (await aget(port, "/readyz"))[0] == 200
            status, content_type, body = await aget(port, "/metrics")
            assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
            samples = {
                (s.name, s.labels.get("name")): s.value
                for family in text_string_to_metric_families(body)
                for s in family.samples
            }
            assert samples[("kingest_ingestion_rows_loaded_total", "a")] == 5
            assert (await aget(port, "/"))[0] == 404
        finally:
            await probes.stop()

    asyncio.run(scenario())


def test_metrics_get_their_own_port_when_one_is_named() -> None:
    probes = ProbeServer(IngestionMetrics(), f"http://127.0.0.1:{free_port()}/healthz", None, 0)

    async def scenario() -> int:
        await probes.start()
        try:
            health_port, metrics_port = probes.ports
            assert (await aget(metrics_port, "/metrics"))[0] == 200
            assert (await aget(metrics_port, "/healthz"))[0] == 200
            assert health_port != metrics_port
            return metrics_port
        finally:
            await probes.stop()

    metrics_port = asyncio.run(scenario())
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)
