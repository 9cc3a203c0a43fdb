"""Fixtures for the operator's end-to-end tests on the real control plane.

The operator runs as `kingest operator` in a subprocess, with a kubeconfig for the
ServiceAccount `kingest-system/kingest-operator` bound to exactly the ClusterRole it ships
with (`kingest.operator.rbac`), never as admin. The Jobs it creates run on the platform's
real node, as containers of the kingest image built from the Dockerfile, against an S3
server at the node's IP.
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from kingest.operator import crd, rbac
from kingest.operator.spec import GROUP, PLURAL, VERSION
from tests.platform.cluster import Cluster
from tests.platform.operator_process import OperatorProcess
from tests.platform.processes import free_port
from tests.platform.s3 import S3Server

OPERATOR_NAMESPACE = "kingest-system"
OPERATOR_ACCOUNT = "kingest-operator"


@pytest.fixture(scope="session")
def s3_server(cluster_s3: S3Server) -> S3Server:
    """The S3 server the runner Pods reach (at the node's IP)."""
    return cluster_s3


@pytest.fixture(scope="session")
def ingestion_crd(kube: Cluster, kube_api: k8s.ApiClient) -> None:
    """The Ingestion CRD, installed from the generated file, and known to the admission check
    of owner references.

    That check maps kinds through a discovery cache of its own, refreshed apart from the CRD
    becoming Established: until then it refuses (403) a Job owned by an Ingestion, as the
    operator's Jobs are. The operator retries; a test calling a reconcile once would fail.
    """
    applied = kube.kubectl("apply", "-f", str(crd.CRD_FILE), check=False)
    assert applied.returncode == 0, applied.stderr
    kube.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/ingestions.kingest.io"
    )
    owned = {
        "metadata": {
            "name": "owned-by-an-ingestion",
            "ownerReferences": [
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Ingestion", "name": "any",
                 "uid": "00000000-0000-0000-0000-000000000000", "blockOwnerDeletion": True}
            ],
        }
    }  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            k8s.CoreV1Api(kube_api).create_namespaced_config_map("default", owned, dry_run="All")
            return
        except k8s.ApiException as exc:
            if exc.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _create(call: Callable[..., Any], *args: Any) -> None:
    try:
        call(*args)
    except k8s.ApiException as exc:
        if exc.status != 409:
            raise


@pytest.fixture(scope="session")
def operator_kubeconfig(kube: Cluster, kube_api: k8s.ApiClient, ingestion_crd: None) -> Path:
    """A kubeconfig acting as the operator's ServiceAccount, bound to the shipped RBAC."""
    core, authz = k8s.CoreV1Api(kube_api), k8s.RbacAuthorizationV1Api(kube_api)
    _create(core.create_namespace, {"metadata": {"name": OPERATOR_NAMESPACE}})
    _create(
        core.create_namespaced_service_account,
        OPERATOR_NAMESPACE,
        {"metadata": {"name": OPERATOR_ACCOUNT}},
    )
    _create(authz.create_cluster_role, rbac.cluster_role(OPERATOR_ACCOUNT))
    _create(
        authz.create_cluster_role_binding,
        {
            "metadata": {"name": OPERATOR_ACCOUNT},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": OPERATOR_ACCOUNT,
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": OPERATOR_ACCOUNT,
                    "namespace": OPERATOR_NAMESPACE,
                }
            ],
        },
    )
    return kube.kubeconfig_as(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)


class Operator(OperatorProcess):
    """`kingest operator` watching one namespace, as a process that tests can kill."""

    def __init__(self, kubeconfig: Path, namespace: str, log_dir: Path, image: str) -> None:
        super().__init__(log_dir)
        self.kubeconfig, self.namespace, self.image = kubeconfig, namespace, image
        self.starts = 0
        # What a test adds to every start (flags, environment), e.g. a clock file.
        self.extra_args: list[str] = []
        self.extra_env: dict[str, str] = {}

    def start(self) -> None:
        port = free_port()
        self.starts += 1
        args = ["operator", "--namespace", self.namespace]
        args += ["--liveness", f"http://127.0.0.1:{port}/healthz", *self.extra_args]
        env = {
            "PATH": os.environ.get("PATH", ""),
            "KUBECONFIG": str(self.kubeconfig),
            "KINGEST_RUNNER_IMAGE": self.image,
            **self.extra_env,
        }
        self.launch(f"operator-{self.starts}", args, env, port)


@pytest.fixture
def operator(
    kube: Cluster, operator_kubeconfig: Path, namespace: str, tmp_path: Path
) -> Iterator[Operator]:
    """The operator, running as its ServiceAccount, watching this test's namespace."""
    running = Operator(operator_kubeconfig, namespace, tmp_path, kube.image)
    running.start()
    try:
        yield running
    finally:
        running.stop()


class ClockedOperator(Operator):
    """The operator on a clock file, serving /metrics on a free loopback port."""

    def __init__(self, kubeconfig: Path, namespace: str, log_dir: Path, image: str) -> None:
        super().__init__(kubeconfig, namespace, log_dir, image)
        self.clock_file = log_dir / "clock"
        self.metrics_port = free_port()
        self.extra_args = ["--metrics-port", str(self.metrics_port)]
        self.extra_env = {"KINGEST_CLOCK_FILE": str(self.clock_file)}
        self.set_clock(datetime.now(UTC))

    def set_clock(self, moment: datetime) -> None:
        # Written whole and renamed: the operator never reads half a timestamp.
        partial = self.clock_file.with_suffix(".new")
        partial.write_text(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        partial.replace(self.clock_file)

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.read().decode()


@pytest.fixture
def clocked(
    kube: Cluster, operator_kubeconfig: Path, namespace: str, tmp_path: Path
) -> Iterator[ClockedOperator]:
    running = ClockedOperator(operator_kubeconfig, namespace, tmp_path, kube.image)
    running.start()
    try:
        yield running
    finally:
        running.stop()


class Ingestions:
    """Create, change and wait for Ingestions in one namespace (as admin, like a user)."""

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.custom = k8s.CustomObjectsApi(api)

    def create(self, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Ingestion",
            "metadata": {"name": name, **metadata},
            "spec": spec,
        }
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, patch
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def wait(
        self, name: str, until: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        """The Ingestion once `until(its status)` holds; fails with the last status."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.get(name).get("status") or {}
            if until(status):
                return self.get(name)
            time.sleep(0.2)
        raise AssertionError(f"Ingestion {name}: condition not met in {timeout} s; status={status}")

    def wait_for_phase(self, name: str, *phases: str, timeout: float = 60) -> dict[str, Any]:
        return self.wait(name, lambda s: s.get("phase") in phases, timeout)

    def jobs(self) -> list[dict[str, Any]]:
        items = k8s.BatchV1Api(self.api).list_namespaced_job(self.namespace).items
        return [self.api.sanitize_for_serialization(job) for job in items]

    def pods(self) -> list[dict[str, Any]]:
        items = k8s.CoreV1Api(self.api).list_namespaced_pod(self.namespace).items
        return [self.api.sanitize_for_serialization(pod) for pod in items]

    def events(self) -> list[dict[str, Any]]:
        items = k8s.CoreV1Api(self.api).list_namespaced_event(self.namespace).items
        return [self.api.sanitize_for_serialization(event) for event in items]

    def wait_for_events(self, reason: str, timeout: float = 30) -> list[dict[str, Any]]:
        """The Events with `reason`, once there is one: the operator posts them after the
        status write a test usually waits for."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events() if e["reason"] == reason]
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"no {reason} Event within {timeout} s")

    def secret(self, name: str, data: dict[str, str]) -> None:
        k8s.CoreV1Api(self.api).create_namespaced_secret(
            self.namespace, {"metadata": {"name": name}, "stringData": data}
        )


@pytest.fixture
def ingestions(kube_api: k8s.ApiClient, namespace: str) -> Ingestions:
    return Ingestions(kube_api, namespace)
