"""A real Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager and, for a
cluster with a node (`tests.platform.cluster`), kube-scheduler.

RBAC and token auth are on, so a client acting as a ServiceAccount is held to exactly the
rules bound to it. Without a node (the operator benchmarks), there is no scheduler: Pods stay
Pending, and the API server listens on loopback only. With a node, the API server is
advertised on the node's IP behind the `kubernetes` Service, so Pods use in-cluster
configuration unchanged.
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

from tests.platform.node import NODE_NAME
from tests.platform.processes import ManagedProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTROLLERS = "job,garbagecollector,namespace,serviceaccount,serviceaccount-token"
# What a node needs besides: Deployments (the chart's operator), Services' endpoints,
# PersistentVolume binding, and nodelifecycle, which lifts the not-ready taint a new node
# registers with.
NODE_CONTROLLERS = "replicaset,deployment,endpoint,persistentvolume-binder,nodelifecycle,podgc"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"


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


def make_certificates(folder: Path, ips: list[str], names: list[str]) -> tuple[Path, Path, Path]:
    """A CA and an API server certificate it signs for `ips` and `names`: (ca, cert, key).

    Pods verify the API server with the CA (the controller-manager's root CA, mounted with
    every ServiceAccount token), whichever address they use.
    """
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    cert, key, csr = folder / "apiserver.crt", folder / "apiserver.key", folder / "apiserver.csr"
    extensions = folder / "apiserver.ext"
    san = ",".join([*(f"IP:{ip}" for ip in ips), *(f"DNS:{name}" for name in names)])
    extensions.write_text(
        f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    for argv in (
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-keyout", ca_key, "-out", ca, "-subj", "/CN=kingest-test-ca",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=kube-apiserver"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "30", "-out", cert, "-extfile", extensions],
    ):  # fmt: skip
        subprocess.run([str(a) for a in argv], check=True, capture_output=True)
    return ca, cert, key


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, started in `root`, stopped by `stop()`.

    With `node_ip`, set up for a node at that address (`tests.platform.cluster`).
    """

    def __init__(
        self, root: Path, binaries: Path | None = None, node_ip: str | None = None
    ) -> None:
        self.root = root
        self.binaries = binaries or control_plane_binaries()
        self.node_ip = node_ip
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
        # The node's identities: the Node authorizer and NodeRestriction hold the kubelet to
        # its own node's objects; kube-proxy gets the built-in system:node-proxier role.
        self.node_tokens = {"node": secrets.token_hex(16), "proxy": secrets.token_hex(16)}
        (root / "tokens.csv").write_text(
            f"{self.admin_token},admin,admin,system:masters\n"
            f"{self.node_tokens['node']},system:node:{NODE_NAME},node,system:nodes\n"
            f"{self.node_tokens['proxy']},system:kube-proxy,kube-proxy\n"
        )
        ips = ["127.0.0.1", SERVICE_IP] + ([self.node_ip] if self.node_ip else [])
        names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
        self.ca_file, cert, key = make_certificates(root / "certs", ips, names)

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
        if self.node_ip:
            # Pods reach it through the `kubernetes` Service, whose endpoint the lease
            # reconciler keeps at the advertised address.
            serving = ["--bind-address=0.0.0.0", f"--advertise-address={self.node_ip}"]
            serving.append("--endpoint-reconciler-type=lease")
        else:
            serving = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"]
            serving.append("--endpoint-reconciler-type=none")
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                *serving,
                f"--secure-port={api_port}",
                "--insecure-port=0",
                f"--tls-cert-file={cert}",
                f"--tls-private-key-file={key}",
                f"--token-auth-file={root / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                # Admission webhooks behind a Service are called at their Pods' endpoints:
                # this machine routes Service IPs only for Pods (see tests.platform.node), and
                # the API server runs beside them, as on clusters without kube-proxy on the
                # control plane's hosts.
                "--enable-aggregator-routing=true",
                # OwnerReferencesPermissionEnforcement, as on OpenShift: an ownerReference
                # that blocks its owner's deletion needs `update` on the owner's finalizers,
                # so RBAC is proven where it is strictest. PodNodeSelector lets a namespace
                # keep its Pods off the node (tests that play the kubelet themselves).
                "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement,"
                "PodNodeSelector",
            ],
        )
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
                f"--controllers={CONTROLLERS},{NODE_CONTROLLERS}"
                if self.node_ip
                else f"--controllers={CONTROLLERS}",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={self.ca_file}",
                "--leader-elect=false",
            ],
        )
        if self.node_ip:
            self._spawn(
                "kube-scheduler",
                [
                    str(self.binaries / "kube-scheduler"),
                    f"--kubeconfig={self.kubeconfig}",
                    "--leader-elect=false",
                    "--port=0",
                    "--secure-port=0",
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
        context = ssl.create_default_context(cafile=str(self.ca_file))
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
