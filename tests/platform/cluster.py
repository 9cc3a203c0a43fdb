"""A one-node Kubernetes cluster on this machine, as the tests and `make demo` use it.

The control plane (`tests.platform.kube`) plus a real node (`tests.platform.node`) running
the kingest image built from the project's Dockerfile. Everything it needs is made once per
machine by `scripts/platform.sh` (Debian packages, Kubernetes binaries, the images).

Volumes and Services as a cluster has them, within what this machine has:
- a PersistentVolumeClaim is bound to a `local` PersistentVolume the platform creates for it
  (`Cluster.claim`), a folder on this machine, so a test can read what a run wrote;
- Services route through kube-proxy; there is no cluster DNS, so servers the tests start
  for Pods (the S3 server) are reached at the node's IP (`Cluster.node_ip`).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tests.platform.kube import REPO_ROOT, ControlPlane
from tests.platform.node import NODE_NAME, Node, PlatformUnavailable, default_route_ip


@dataclass(frozen=True)
class Artifacts:
    binaries: Path
    image: str


def platform_artifacts() -> Artifacts:
    """The Kubernetes binaries and the kingest image, made by `scripts/platform.sh` when
    missing (it installs what it needs; root)."""
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "platform.sh")],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise PlatformUnavailable(
            f"scripts/platform.sh failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
        )
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return Artifacts(Path(values["KUBE_BIN"]), values["IMAGE"])


class Cluster(ControlPlane):
    """The control plane and one real node, started in `root`, stopped by `stop()`."""

    def __init__(self, root: Path, artifacts: Artifacts | None = None) -> None:
        artifacts = artifacts or platform_artifacts()
        self.image = artifacts.image
        self.node: Node | None = None
        self.volumes = root / "volumes"
        super().__init__(root, artifacts.binaries, node_ip=default_route_ip())
        assert self.node_ip is not None
        try:
            self.node = Node(
                root / "node",
                self.binaries,
                self.server,
                self.ca_file,
                self.node_tokens,
                self.node_ip,
                [self.image],
            )
            self._wait_for_node()
        except BaseException:
            self.stop()
            raise

    def _wait_for_node(self, timeout: float = 120) -> None:
        core = k8s.CoreV1Api(self.api_client())
        node = self.node
        assert node is not None
        deadline = time.monotonic() + timeout
        state = "not registered"
        while time.monotonic() < deadline:
            try:
                found = core.read_node(NODE_NAME)
            except k8s.ApiException:
                found = None
            if found is not None:
                ready = {c.type: c.status for c in found.status.conditions or []}.get("Ready")
                taints = [t.key for t in found.spec.taints or []]
                state = f"Ready={ready}, taints={taints}"
                if ready == "True" and not taints and node.services_routed():
                    if self._default_service_account(core):
                        return
                    state = "no default ServiceAccount yet"
            time.sleep(0.5)
        raise TimeoutError(
            f"node {NODE_NAME} not usable after {timeout:.0f} s ({state}):\n"
            f"{node.log_tail('kubelet')}"
        )

    @staticmethod
    def _default_service_account(core: k8s.CoreV1Api) -> bool:
        try:
            core.read_namespaced_service_account("default", "default")
        except k8s.ApiException:
            return False
        return True

    def volume(self, namespace: str, claim: str, size: str = "1Gi") -> Path:
        """A local PersistentVolume on the node, reserved for the claim `namespace/claim`
        (created by the test or a manifest it applies); returns its folder on this machine.

        Static provisioning, as a cluster without a dynamic provisioner does it: no storage
        class, so a claim that names none binds to it.
        """
        folder = self.volumes / namespace / claim
        if folder.exists():
            return folder
        folder.mkdir(parents=True)
        k8s.CoreV1Api(self.api_client()).create_persistent_volume(
            {
                "metadata": {"name": f"{namespace}-{claim}"},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "local": {"path": str(folder)},
                    "claimRef": {"namespace": namespace, "name": claim},
                    "nodeAffinity": _on_node(),
                },
            }
        )
        return folder

    def claim(self, namespace: str, name: str, size: str = "1Gi") -> Path:
        """A PersistentVolumeClaim `namespace/name` with its volume (see `volume`); once."""
        if (self.volumes / namespace / name).exists():
            return self.volumes / namespace / name
        folder = self.volume(namespace, name, size)
        k8s.CoreV1Api(self.api_client()).create_namespaced_persistent_volume_claim(
            namespace,
            {
                "metadata": {"name": name},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "resources": {"requests": {"storage": size}},
                },
            },
        )
        return folder

    def container_env(self, pod: dict[str, Any], container: int = 0) -> dict[str, str]:
        """The environment a Pod's container was started with, as containerd holds it
        (`valueFrom` resolved by the kubelet)."""
        assert self.node is not None
        container_id = pod["status"]["containerStatuses"][container]["containerID"]
        runtime, _, ident = container_id.partition("://")
        assert runtime == "containerd", container_id
        return self.node.container_env(ident)

    def kill_container(self, container_id: str) -> None:
        """SIGKILL a Pod's container (`containerd://ID`) on the node."""
        assert self.node is not None
        self.node.kill_container(container_id.partition("://")[2])

    def stop(self) -> None:
        try:
            if self.node is not None:
                self.node.stop()
                self.node = None
        finally:
            super().stop()


def _on_node() -> dict[str, Any]:
    return {
        "required": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}
                    ]
                }
            ]
        }
    }
