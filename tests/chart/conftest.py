"""Fixtures for the chart on the real cluster: releases, and the operator the chart installs,
running as users run it: the Deployment's Pods on the node, the kingest image built from the
Dockerfile, the chart's ServiceAccount token mounted, in-cluster configuration through the
`kubernetes` Service (the API server enforces the chart's RBAC on every request).

Releases install with no operator replica (`operator_values`), so a test can change what it
needs (RBAC rules, say) before `start_operator` scales the Deployment up.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from kingest.operator.spec import GROUP, PLURAL, VERSION
from tests.platform.cluster import Cluster
from tests.platform.helm import Helm
from tests.platform.kube import delete_namespace
from tests.platform.s3 import S3Server

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "kingest"
CRD_NAME = f"{PLURAL}.{GROUP}"


@pytest.fixture(scope="session")
def s3_server(cluster_s3: S3Server) -> S3Server:
    """The S3 server the runner Pods reach (at the node's IP)."""
    return cluster_s3


def image_values(image: str) -> dict[str, Any]:
    """Chart values for the image the node holds; `Never`: nothing is pulled from anywhere."""
    repository, _, tag = image.rpartition(":")
    return {"image": {"repository": repository, "tag": tag, "pullPolicy": "Never"}}


def adopt_crd(api: k8s.ApiClient, release: str, namespace: str) -> None:
    """Mark an existing Ingestion CRD as the release's, the way Helm documents adoption.

    Other tests (and users upgrading from `kubectl apply`) create the CRD outside Helm, and a
    kept CRD stays annotated with the release that installed it; Helm refuses to install over
    an object another owner manages, and deleting the CRD would delete every Ingestion.
    """
    extensions = k8s.ApiextensionsV1Api(api)
    try:
        extensions.read_custom_resource_definition(CRD_NAME)
    except k8s.ApiException as error:
        if error.status == 404:
            return
        raise
    extensions.patch_custom_resource_definition(
        CRD_NAME,
        {
            "metadata": {
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {
                    "meta.helm.sh/release-name": release,
                    "meta.helm.sh/release-namespace": namespace,
                },
            }
        },
    )


def wait_established(api: k8s.ApiClient, timeout: float = 60) -> dict[str, Any]:
    extensions = k8s.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = api.sanitize_for_serialization(extensions.read_custom_resource_definition(CRD_NAME))
        conditions = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
        if conditions.get("Established") == "True":
            return crd
        time.sleep(0.2)
    raise AssertionError(f"CRD {CRD_NAME} not Established in {timeout} s")


class Release:
    """One Helm release of the chart in a test namespace (uninstalled after the test)."""

    def __init__(self, kube: Cluster, api: k8s.ApiClient, namespace: str) -> None:
        self.kube, self.api, self.namespace = kube, api, namespace
        self.name = f"k{uuid.uuid4().hex[:8]}"
        self.helm = Helm(kube, namespace)
        self.installed = False

    @property
    def fullname(self) -> str:
        return f"{self.name}-kingest"

    def values(self, values: dict[str, Any] | None) -> dict[str, Any]:
        """`values` on top of the node's image."""
        return image_values(self.kube.image) | (values or {})

    def install(self, values: dict[str, Any] | None = None, chart: Path = CHART) -> Any:
        adopt_crd(self.api, self.name, self.namespace)
        release = self.helm.install(chart, self.name, self.values(values))
        self.installed = True
        wait_established(self.api)
        return release

    def upgrade(self, values: dict[str, Any] | None = None, chart: Path = CHART) -> Any:
        release = self.helm.upgrade(chart, self.name, self.values(values))
        wait_established(self.api)
        return release

    def uninstall(self) -> None:
        self.helm.uninstall(self.name)
        self.installed = False

    def deployment(self) -> dict[str, Any]:
        apps = k8s.AppsV1Api(self.api)
        return self.api.sanitize_for_serialization(
            apps.read_namespaced_deployment(self.fullname, self.namespace)
        )

    def app_version(self, chart: Path = CHART) -> str:
        return yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]

    def service_account(self) -> str:
        return self.deployment()["spec"]["template"]["spec"]["serviceAccountName"]


@pytest.fixture
def release(kube: Cluster, kube_api: k8s.ApiClient, namespace: str) -> Iterator[Release]:
    installed = Release(kube, kube_api, namespace)
    try:
        yield installed
    finally:
        if installed.installed:
            installed.uninstall()


class ChartReplica:
    """One Pod of the chart's operator Deployment."""

    def __init__(self, release: Release, name: str) -> None:
        self.release, self.name = release, name
        self.core = k8s.CoreV1Api(release.api)

    def pod(self) -> dict[str, Any]:
        return self.release.api.sanitize_for_serialization(
            self.core.read_namespaced_pod(self.name, self.release.namespace)
        )

    def logs(self) -> str:
        """What the operator logged, an earlier (restarted) container's log first."""
        text = ""
        for previous in (True, False):
            result = self.release.kube.kubectl(
                "logs", "-n", self.release.namespace, self.name, f"--previous={previous}",
                check=False,
            )  # fmt: skip
            if result.returncode == 0:
                text += result.stdout
        return text

    def metrics(self) -> str:
        """What this replica's /metrics serves, at its Pod IP (the chart's `metrics` port)."""
        pod = self.pod()
        ports = pod["spec"]["containers"][0]["ports"]
        port = next(p["containerPort"] for p in ports if p["name"] == "metrics")
        url = f"http://{pod['status']['podIP']}:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.read().decode()

    def kill(self) -> None:
        """SIGKILL the operator's process on the node and remove its Pod at once, as when a
        node dies: no chance to finish or hand over anything (a restarted container would
        come back with the same identity). The ReplicaSet starts a replacement Pod."""
        status = self.pod()["status"]["containerStatuses"][0]
        self.release.kube.kill_container(status["containerID"])
        self.core.delete_namespaced_pod(self.name, self.release.namespace, grace_period_seconds=0)

    def exit_code(self, timeout: float) -> int:
        """The exit code of the operator's first run in this Pod, once it has exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = (self.pod()["status"].get("containerStatuses") or [{}])[0]
            for state in (status.get("lastState") or {}, status.get("state") or {}):
                if "terminated" in state:
                    return state["terminated"]["exitCode"]
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not exit within {timeout} s")


def replica_pods(release: Release) -> list[dict[str, Any]]:
    selector = release.deployment()["spec"]["selector"]["matchLabels"]
    pods = k8s.CoreV1Api(release.api).list_namespaced_pod(
        release.namespace, label_selector=",".join(f"{k}={v}" for k, v in selector.items())
    )
    return [release.api.sanitize_for_serialization(p) for p in pods.items]


def start_replicas(release: Release, count: int, ready: bool = True) -> list[ChartReplica]:
    """Scale the operator Deployment to `count` and wait for its Pods (running, and Ready
    when `ready`)."""
    apps = k8s.AppsV1Api(release.api)
    apps.patch_namespaced_deployment_scale(
        release.fullname, release.namespace, {"spec": {"replicas": count}}
    )
    deadline = time.monotonic() + 90
    pods: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        pods = [p for p in replica_pods(release) if not p["metadata"].get("deletionTimestamp")]
        states = [(p.get("status") or {}).get("containerStatuses") or [{}] for p in pods]
        started = [s[0].get("ready") if ready else s[0].get("started") for s in states]
        if len(pods) == count and all(started):
            return [ChartReplica(release, p["metadata"]["name"]) for p in pods]
        time.sleep(0.3)
    raise AssertionError(
        f"{count} operator replica(s) not {'Ready' if ready else 'started'} in 90 s: "
        + json.dumps([p.get("status") for p in pods])[:3000]
    )


@pytest.fixture
def start_operator(release: Release) -> Callable[..., list[ChartReplica]]:
    """Start (count=1, ready=True) -> the operator Deployment's running replicas."""

    def start(count: int = 1, ready: bool = True) -> list[ChartReplica]:
        return start_replicas(release, count, ready)

    return start


def operator_values(**extra: Any) -> dict[str, Any]:
    """Chart values for a test: no operator replica until `start_operator` (see above)."""
    return {"replicaCount": 0, **extra}


@pytest.fixture
def apps_namespace(kube_api: k8s.ApiClient) -> Iterator[str]:
    """A namespace for users' Ingestions, apart from the operator's release namespace."""
    name = f"a-{uuid.uuid4().hex[:10]}"
    k8s.CoreV1Api(kube_api).create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        delete_namespace(kube_api, name)


def ingestion_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Ingestion",
        "metadata": {"name": name},
        "spec": spec,
    }
