"""Session-wide fixtures: the real S3 server, control plane, kubelet harness and Helm."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform.s3 import S3Server


@pytest.fixture(scope="session")
def platform_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder collecting the logs of every server the platform starts."""
    return tmp_path_factory.mktemp("platform-logs")


@pytest.fixture(scope="session")
def s3_server(platform_logs: Path) -> Iterator[S3Server]:
    server = S3Server(platform_logs)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _clear_s3_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "s3_server" in request.fixturenames:
        request.getfixturevalue("s3_server").faults.clear()


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket on the platform's S3 server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name
