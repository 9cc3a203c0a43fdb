"""Session-wide fixtures: the real S3 server, control plane, kubelet harness and Helm."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.platform.kube import ControlPlane, delete_namespace
from tests.platform.kubelet import Kubelet
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
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real kube-apiserver + controller-manager (job, garbage collector, namespaces, SAs)."""
    control_plane = ControlPlane(tmp_path_factory.mktemp("kube"))
    try:
        yield control_plane
    finally:
        control_plane.stop()


@pytest.fixture(scope="session")
def kube_api(kube: ControlPlane) -> k8s.ApiClient:
    """An admin client of the control plane."""
    return kube.api_client()


@pytest.fixture
def namespace(kube: ControlPlane, kube_api: k8s.ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted (with everything in it) after the test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    k8s.CoreV1Api(kube_api).create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        delete_namespace(kube_api, name)


@pytest.fixture(scope="session")
def _kubelet(
    kube_api: k8s.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kubelet]:
    kubelet = Kubelet(kube_api, tmp_path_factory.mktemp("kubelet"))
    try:
        yield kubelet
    finally:
        kubelet.stop()


@pytest.fixture
def kubelet(_kubelet: Kubelet, namespace: str) -> Iterator[Kubelet]:
    """The kubelet harness, running the Pods of this test's namespace."""
    _kubelet.serve(namespace)
    try:
        yield _kubelet
    finally:
        _kubelet.release(namespace)
