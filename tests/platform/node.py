"""A real Kubernetes node on this machine: containerd + runc, CNI bridge, kubelet, kube-proxy.

Pods of the platform's control plane run here as real containers of real images (the
kingest image built from the project's Dockerfile, `scripts/image.sh`), under the security
context, resource limits and volumes their spec asks for. Recipe and the errors it avoids:
`shared/notes/real-kubelet.md`.

Only one node runs on a machine at a time (the kubelet, containerd's shims and CNI use fixed
host paths and ports); a second platform fails at once, naming the lock. Everything a node
changes on the host is recorded first and put back on stop (`tests.platform.host`), also
after a run that was killed before it could clean up.

There is no cluster DNS: Pods reach the API server through the `kubernetes` Service
(kube-proxy, iptables mode) and test servers at the node's IP (`Node.ip`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import time
from pathlib import Path
from typing import IO

from tests.platform.host import HostState, kill_pods
from tests.platform.processes import ManagedProcess

NODE_NAME = "kingest-node"
BRIDGE = "kgbr0"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
CNI_BIN = Path("/usr/lib/cni")
RUNC = "/usr/sbin/runc"
PAUSE_IMAGE = "localhost/pause:3.2"


class PlatformUnavailable(RuntimeError):
    """This machine cannot run the node; the message says why and what to do."""


def cache_root() -> Path:
    """The project's per-machine cache (`KINGEST_CACHE`, else ~/.cache/kingest)."""
    explicit = os.environ.get("KINGEST_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kingest"


def default_route_ip() -> str:
    """The IPv4 address this machine sends from: the node's InternalIP.

    The kubelet refuses a loopback node IP, and Pods on the CNI bridge reach the host there.
    `ip route get` only looks the route up; it sends nothing.
    """
    out = subprocess.run(
        ["ip", "-4", "route", "get", "192.0.2.255"], capture_output=True, text=True
    ).stdout.split()
    if "src" not in out:
        raise PlatformUnavailable(
            "no IPv4 default route: the node needs a non-loopback address for its InternalIP"
        )
    return out[out.index("src") + 1]


class Node:
    """containerd, kubelet and kube-proxy registered with `control_plane` as `NODE_NAME`."""

    def __init__(
        self,
        root: Path,
        binaries: Path,
        server: str,
        ca_file: Path,
        tokens: dict[str, str],
        ip: str,
        images: list[str],
    ) -> None:
        if os.geteuid() != 0:
            raise PlatformUnavailable("the real node needs root (containerd, kubelet, iptables)")
        self.root, self.binaries, self.ip = root, binaries, ip
        self.cache = cache_root() / "node"
        self.cache.mkdir(parents=True, exist_ok=True)
        self._lock = self._acquire_lock()
        self._processes: list[ManagedProcess] = []
        self.socket = root / "containerd" / "containerd.sock"
        self.host = HostState(self.cache, BRIDGE, SERVICE_CIDR)
        try:
            leftover = self.host.restore()
            if leftover:
                raise PlatformUnavailable(
                    "an earlier node left state that cannot be undone: " + "; ".join(leftover)
                )
            self.host.save([root, self.cache / "containerd"])
            self._start(server, ca_file, tokens, images)
        except BaseException:
            self.stop()
            raise

    def _acquire_lock(self) -> IO[str]:
        path = self.cache / "lock"
        lock = open(path, "a+")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise PlatformUnavailable(
                f"another kingest platform runs a node on this machine ({holder}; lock {path}):"
                " stop it (Ctrl-C in `make demo`, or wait for the other test run) first"
            ) from None
        lock.truncate(0)
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        return lock

    # -- start ---------------------------------------------------------------------------

    def _start(self, server: str, ca_file: Path, tokens: dict[str, str], images: list[str]) -> None:
        for folder in ("logs", "containerd", "cni", "kubelet", "volume-plugins", "ipam"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        # Unrouted Service IPs stay on this machine: kube-proxy rewrites every packet to a
        # Service before routing, and anything it does not know is refused here.
        subprocess.run(
            ["ip", "route", "replace", "unreachable", SERVICE_CIDR], check=True, capture_output=True
        )
        self._start_containerd()
        self.import_images([PAUSE_IMAGE, *images])
        kubelet_config = self._kubeconfig("kubelet", server, ca_file, tokens["node"])
        proxy_config = self._kubeconfig("kube-proxy", server, ca_file, tokens["proxy"])
        self._spawn(
            "kubelet",
            [
                str(self.binaries / "kubelet"),
                f"--kubeconfig={kubelet_config}",
                "--container-runtime=remote",
                f"--container-runtime-endpoint=unix://{self.socket}",
                "--runtime-request-timeout=5m",
                "--cgroup-driver=cgroupfs",
                "--fail-swap-on=false",
                "--oom-score-adj=0",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.ip}",
                f"--address={self.ip}",
                "--port=10250",
                "--read-only-port=0",
                "--healthz-bind-address=127.0.0.1",
                f"--root-dir={self.root / 'kubelet'}",
                f"--cert-dir={self.root / 'kubelet' / 'pki'}",
                f"--volume-plugin-dir={self.root / 'volume-plugins'}",
                "--register-node=true",
                "--image-gc-high-threshold=100",
                "--image-gc-low-threshold=99",
                "--eviction-hard=memory.available<50Mi,nodefs.available<1%,imagefs.available<1%",
                f"--pod-infra-container-image={PAUSE_IMAGE}",
                "--resolv-conf=/etc/resolv.conf",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-proxy",
            [
                str(self.binaries / "kube-proxy"),
                f"--kubeconfig={proxy_config}",
                "--proxy-mode=iptables",
                f"--hostname-override={NODE_NAME}",
                f"--cluster-cidr={POD_CIDR}",
                "--bind-address=127.0.0.1",
                "--healthz-bind-address=127.0.0.1:10256",
                "--metrics-bind-address=127.0.0.1:10249",
                # 0: leave the host's conntrack settings as they are.
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--iptables-min-sync-period=0s",
            ],
        )

    def _start_containerd(self) -> None:
        state = self.root / "containerd" / "state"
        config = self.root / "containerd.toml"
        default = subprocess.run(
            ["containerd", "config", "default"], check=True, capture_output=True, text=True
        ).stdout
        replacements = [
            ('root = "/var/lib/containerd"', f'root = "{self.cache / "containerd"}"'),
            ('state = "/run/containerd"', f'state = "{state}"'),
            ('address = "/run/containerd/containerd.sock"', f'address = "{self.socket}"'),
            ('sandbox_image = "registry.k8s.io/pause:3.6"', f'sandbox_image = "{PAUSE_IMAGE}"'),
            # Root lacks CAP_SYS_RESOURCE here: the pause container's oom_score_adj (-998)
            # cannot go below containerd's own, so containerd must not ask for it.
            ("restrict_oom_score_adj = false", "restrict_oom_score_adj = true"),
            ('bin_dir = "/opt/cni/bin"', f'bin_dir = "{CNI_BIN}"'),
            ('conf_dir = "/etc/cni/net.d"', f'conf_dir = "{self.root / "cni"}"'),
            ('BinaryName = ""', f'BinaryName = "{RUNC}"'),
        ]
        for old, new in replacements:
            if old not in default:
                raise PlatformUnavailable(f"containerd's default config lacks {old!r}")
            default = default.replace(old, new, 1)
        config.write_text(default)
        (self.root / "cni" / "10-kingest.conflist").write_text(
            '{"cniVersion": "0.4.0", "name": "kingest", "plugins": ['
            f'{{"type": "bridge", "bridge": "{BRIDGE}", "isGateway": true, "ipMasq": false,'
            ' "hairpinMode": true, "ipam": {"type": "host-local",'
            f' "dataDir": "{self.root / "ipam"}",'
            f' "ranges": [[{{"subnet": "{POD_CIDR}"}}]], "routes": [{{"dst": "0.0.0.0/0"}}]}}}},'
            ' {"type": "loopback"}]}'
        )
        process = self._spawn("containerd", ["containerd", "--config", str(config)])
        process.wait_until(
            lambda: self._ctr("version").returncode == 0, timeout=30, what="containerd socket"
        )

    def _ctr(self, *args: str, **options: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "-n", "k8s.io", *args],
            capture_output=True,
            **options,  # type: ignore[arg-type]
        )

    def import_images(self, images: list[str]) -> None:
        """Make podman's `images` available to the kubelet (imported once per tag)."""
        present = set(self._ctr("images", "ls", "-q").stdout.decode().split())
        for image in images:
            if image in present:
                continue
            save = subprocess.Popen(
                ["podman", "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            imported = self._ctr("images", "import", "-", stdin=save.stdout)
            save.wait()
            if save.returncode != 0 or imported.returncode != 0:
                raise PlatformUnavailable(
                    f"could not import {image} into the node: "
                    f"{save.stderr.read().decode().strip() if save.stderr else ''} "
                    f"{imported.stderr.decode().strip()}"
                )

    def container_env(self, container_id: str) -> dict[str, str]:
        """A container's environment from its OCI spec."""
        info = self._ctr("containers", "info", container_id)
        if info.returncode != 0:
            raise LookupError(f"container {container_id}: {info.stderr.decode().strip()}")
        env = json.loads(info.stdout)["Spec"]["process"]["env"]
        return dict(item.split("=", 1) for item in env)

    def kill_container(self, container_id: str) -> None:
        killed = self._ctr("tasks", "kill", "--signal", "SIGKILL", container_id)
        if killed.returncode != 0:
            raise LookupError(f"container {container_id}: {killed.stderr.decode().strip()}")

    def _kubeconfig(self, who: str, server: str, ca_file: Path, token: str) -> Path:
        path = self.root / f"{who}.kubeconfig"
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: c, cluster: {{server: '{server}',"
            f" certificate-authority: '{ca_file}'}}}}]\n"
            f"users: [{{name: u, user: {{token: '{token}'}}}}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
        )
        path.chmod(0o600)
        return path

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.root / "logs")
        self._processes.append(process)
        return process

    def log_tail(self, name: str, lines: int = 30) -> str:
        for process in self._processes:
            if process.name == name:
                return process.log_tail(lines)
        return ""

    def services_routed(self) -> bool:
        """kube-proxy has written the `kubernetes` Service's rules."""
        nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True)
        return "default/kubernetes:https" in nat.stdout

    # -- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every process and Pod, and put the host back as it was."""
        for process in self._processes:
            if process.name == "kubelet":
                process.stop()
        kill_pods()
        if any(p.name == "containerd" and p.alive() for p in self._processes):
            for task in self._ctr("tasks", "ls", "-q").stdout.decode().split():
                self._ctr("tasks", "delete", "-f", task)
            for container in self._ctr("containers", "ls", "-q").stdout.decode().split():
                self._ctr("containers", "rm", container)
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        problems = self.host.restore()
        with contextlib.suppress(AttributeError, OSError):
            self._lock.close()
        if problems:
            raise RuntimeError("the node left state on the host: " + "; ".join(problems))


def wait_for(check: object, timeout: float, what: str, detail: object = None) -> None:
    """Poll `check()` until true; fail naming `what` (and `detail()` when given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.2)
    extra = f"\n{detail()}" if callable(detail) else ""
    raise TimeoutError(f"no {what} after {timeout:.0f} s{extra}")
