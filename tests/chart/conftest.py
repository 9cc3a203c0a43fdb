"""Fixtures for the chart on the real control plane: releases, and the operator run as the
chart's ServiceAccount with the chart's own arguments and environment.

The control plane has no kubelet for Deployments, so the operator Deployment the chart
creates never starts by itself: tests start its container as a local process, with the
args and env rendered into that Deployment and a kubeconfig for its ServiceAccount (a
bound token; the API server enforces the chart's RBAC on every request).
"""

from __future__ import annotations

import os
import re
import shutil
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
from tests.platform.helm import Helm
from tests.platform.kube import ControlPlane, delete_namespace
from tests.platform.kubelet import Kubelet
from tests.platform.operator_process import OperatorProcess
from tests.platform.processes import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "kingest"
CRD_NAME = f"{PLURAL}.{GROUP}"


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

    def __init__(self, kube: ControlPlane, api: k8s.ApiClient, namespace: str) -> None:
        self.kube, self.api, self.namespace = kube, api, namespace
        self.name = f"k{uuid.uuid4().hex[:8]}"
        self.helm = Helm(kube, namespace)
        self.installed = False

    @property
    def fullname(self) -> str:
        return f"{self.name}-kingest"

    def install(self, values: dict[str, Any] | None = None, chart: Path = CHART) -> Any:
        adopt_crd(self.api, self.name, self.namespace)
        release = self.helm.install(chart, self.name, values)
        self.installed = True
        wait_established(self.api)
        return release

    def upgrade(self, values: dict[str, Any] | None = None, chart: Path = CHART) -> Any:
        release = self.helm.upgrade(chart, self.name, values)
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
def release(kube: ControlPlane, kube_api: k8s.ApiClient, namespace: str) -> Iterator[Release]:
    installed = Release(kube, kube_api, namespace)
    try:
        yield installed
    finally:
        if installed.installed:
            installed.uninstall()


def _map_ports(text: str, ports: dict[str, str]) -> str:
    for port, local in ports.items():
        text = re.sub(rf"(?<![0-9]){port}(?![0-9])", local, text)
    return text


class ChartOperator(OperatorProcess):
    """The chart's operator container, run locally as the chart's ServiceAccount."""

    def __init__(self, release: Release, log_dir: Path, pod_name: str) -> None:
        super().__init__(log_dir)
        self.release, self.pod_name = release, pod_name

    def _env(self, container: dict[str, Any], kubeconfig: Path) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "KUBECONFIG": str(kubeconfig),
            "HOME": str(self.log_dir),
        }
        fields = {"metadata.name": self.pod_name, "metadata.namespace": self.release.namespace}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        return env

    def start(self) -> None:
        deployment = self.release.deployment()
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        kubeconfig = self.release.kube.kubeconfig_as(
            self.release.namespace, self.release.service_account()
        )
        # Each Pod has its own network namespace; replicas on this one machine need their own
        # ports, so the chart's container ports are mapped to free ones in args and env.
        ports = {str(p["containerPort"]): str(free_port()) for p in container.get("ports", [])}
        self.ports = {p["name"]: int(ports[str(p["containerPort"])]) for p in container["ports"]}
        args = [_map_ports(arg, ports) for arg in container["args"]]
        env = {k: _map_ports(v, ports) for k, v in self._env(container, kubeconfig).items()}
        self.launch(f"operator-{self.pod_name}", args, env, self.ports["healthz"])

    def metrics(self) -> str:
        """What this replica's /metrics serves (the chart's `metrics` container port)."""
        url = f"http://127.0.0.1:{self.ports['metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.read().decode()


@pytest.fixture
def start_operator(release: Release, tmp_path: Path) -> Iterator[Callable[[str], OperatorProcess]]:
    """Start (name) -> a running operator replica of the installed release."""
    started: list[ChartOperator] = []

    def start(pod_name: str = "operator-0") -> ChartOperator:
        replica = ChartOperator(release, tmp_path, pod_name)
        replica.start()
        started.append(replica)
        return replica

    try:
        yield start
    finally:
        for replica in started:
            replica.stop()


def operator_values(**extra: Any) -> dict[str, Any]:
    """Chart values for a local run: free ports instead of the in-Pod defaults."""
    return {
        "livenessProbe": {"port": free_port()},
        "metrics": {"port": free_port()},
        **extra,
    }


@pytest.fixture(scope="session")
def _chart_kubelet(kube_api: k8s.ApiClient) -> Iterator[Kubelet]:
    # Under $HOME, not /tmp: the harness maps mount paths by rewriting text, and the runner
    # Pod mounts its own /tmp.
    root = Path.home() / ".cache" / "kingest" / f"kubelet-chart-{uuid.uuid4().hex[:8]}"
    kubelet = Kubelet(kube_api, root)
    try:
        yield kubelet
    finally:
        kubelet.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def apps_namespace(kube_api: k8s.ApiClient) -> Iterator[str]:
    """A namespace for users' Ingestions, apart from the operator's release namespace."""
    name = f"a-{uuid.uuid4().hex[:10]}"
    k8s.CoreV1Api(kube_api).create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        delete_namespace(kube_api, name)


@pytest.fixture
def chart_kubelet(_chart_kubelet: Kubelet, apps_namespace: str) -> Iterator[Kubelet]:
    """The kubelet harness running the runner Pods of `apps_namespace`."""
    _chart_kubelet.serve(apps_namespace)
    try:
        yield _chart_kubelet
    finally:
        _chart_kubelet.release(apps_namespace)


def ingestion_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Ingestion",
        "metadata": {"name": name},
        "spec": spec,
    }
