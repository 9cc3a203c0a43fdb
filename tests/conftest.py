"""Session-wide fixtures: the real S3 server, and a one-node cluster (control plane + a real
kubelet and containerd running the kingest image built from the Dockerfile)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.platform.cluster import Cluster
from tests.platform.kube import delete_namespace
from tests.platform.s3 import S3Server

# Tests contact loopback only: an AWS SDK left without credentials must not fall back to the
# link-local instance metadata address (this holds for every process the tests start).
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


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


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real one-node cluster: etcd, kube-apiserver, controller-manager, scheduler, and a
    kubelet + containerd + kube-proxy running Pods as containers of the kingest image."""
    cluster = Cluster(tmp_path_factory.mktemp("kube"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def cluster_s3(kube: Cluster, platform_logs: Path) -> Iterator[S3Server]:
    """An S3 server at the node's IP, where both this machine and the Pods reach it."""
    assert kube.node_ip is not None
    server = S3Server(platform_logs, host=kube.node_ip)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kube_api(kube: Cluster) -> k8s.ApiClient:
    """An admin client of the control plane."""
    return kube.api_client()


@pytest.fixture
def namespace(kube: Cluster, kube_api: k8s.ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted (with everything in it) after the test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    k8s.CoreV1Api(kube_api).create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        delete_namespace(kube_api, name)
