"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

RBAC and token auth are on, so a client acting as a ServiceAccount is held to exactly the
rules bound to it. There is no scheduler and no kubelet: Pods stay Pending until the kubelet
harness (`tests.platform.kubelet`) runs them.
"""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.platform.processes import ManagedProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTROLLERS = "job,garbagecollector,namespace,serviceaccount,serviceaccount-token"


def control_plane_binaries() -> Path:
    """The folder holding etcd, kube-apiserver and kube-controller-manager.

    `KUBEBUILDER_ASSETS` when set (the envtest convention), otherwise binaries built once per
    machine by `scripts/kube-binaries.sh` (which installs what it needs).
    """
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "kube-binaries.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(result.stdout.strip().splitlines()[-1])


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str, user: str) -> Path:
    """Write a kubeconfig usable by kubectl, the kubernetes client and kopf."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "kingest-test",
                        "cluster": {"server": server, "certificate-authority": str(ca_file)},
                    }
                ],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [{"name": user, "context": {"cluster": "kingest-test", "user": user}}],
                "current-context": user,
            }
        )
    )
    path.chmod(0o600)
    return path


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, started in `root`, stopped by `stop()`."""

    def __init__(self, root: Path, binaries: Path | None = None) -> None:
        self.root = root
        self.binaries = binaries or control_plane_binaries()
        self._processes: list[ManagedProcess] = []
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        root = self.root
        (root / "certs").mkdir(parents=True, exist_ok=True)
        sa_key, sa_pub = root / "sa.key", root / "sa.pub"
        subprocess.run(
            ["openssl", "genrsa", "-out", sa_key, "2048"], check=True, capture_output=True
        )
        subprocess.run(
            ["openssl", "rsa", "-in", sa_key, "-pubout", "-out", sa_pub],
            check=True,
            capture_output=True,
        )
        self.admin_token = secrets.token_hex(16)
        (root / "tokens.csv").write_text(f"{self.admin_token},admin,admin,system:masters\n")

        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(self.binaries / "etcd"),
                f"--data-dir={root / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--log-level=warn",
            ],
        )
        etcd.wait_until(lambda: _http_ok(f"{etcd_url}/health"), timeout=30, what="etcd health")

        self.server = f"https://127.0.0.1:{api_port}"
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                "--insecure-port=0",
                f"--cert-dir={root / 'certs'}",
                f"--token-auth-file={root / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                # As on OpenShift: an ownerReference that blocks its owner's deletion needs
                # `update` on the owner's finalizers, so RBAC is proven where it is strictest.
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            ],
        )
        self.ca_file = root / "certs" / "apiserver.crt"
        apiserver.wait_until(self._ready, timeout=90, what="apiserver /readyz")

        self.kubeconfig = write_kubeconfig(
            root / "admin.kubeconfig", self.server, self.ca_file, self.admin_token, "admin"
        )
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--port=0",
                f"--controllers={CONTROLLERS}",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={self.ca_file}",
                "--leader-elect=false",
            ],
        )

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.root)
        self._processes.append(process)
        return process

    def _ready(self) -> bool:
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        context = ssl.create_default_context(cafile=str(self.root / "certs" / "apiserver.crt"))
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return response.read() == b"ok"

    def api_client(self) -> k8s.ApiClient:
        """A client acting as cluster admin."""
        return k8s_config.new_client_from_config(config_file=str(self.kubeconfig))

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A bound token for ServiceAccount `namespace/name` (TokenRequest API)."""
        core = k8s.CoreV1Api(self.api_client())
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
        )
        response = core.create_namespaced_service_account_token(name, namespace, request)
        return response.status.token

    def kubeconfig_as(self, namespace: str, service_account: str) -> Path:
        """A kubeconfig acting as the ServiceAccount, so RBAC applies to it as in a cluster."""
        token = self.service_account_token(namespace, service_account)
        path = self.root / f"{namespace}.{service_account}.kubeconfig"
        user = f"system:serviceaccount:{namespace}:{service_account}"
        return write_kubeconfig(path, self.server, self.ca_file, token, user)

    def client_as(self, namespace: str, service_account: str) -> k8s.ApiClient:
        """A client acting as the ServiceAccount `namespace/service_account`."""
        path = self.kubeconfig_as(namespace, service_account)
        return k8s_config.new_client_from_config(config_file=str(path))

    def env(self) -> dict[str, str]:
        """Environment for kubectl and other tools to talk to this cluster as admin."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster as admin."""
        return subprocess.run(
            ["kubectl", *args], env=self.env(), check=check, capture_output=True, text=True
        )

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def delete_namespace(api: k8s.ApiClient, name: str) -> None:
    """Delete a namespace without waiting for its finalization."""
    try:
        k8s.CoreV1Api(api).delete_namespace(name, propagation_policy="Background")
    except k8s.ApiException as error:
        if error.status != 404:
            raise


def as_dict(api: k8s.ApiClient, obj: Any) -> dict[str, Any]:
    """A client model as the plain dict the API server sent."""
    return api.sanitize_for_serialization(obj)
