"""What a node changes on the host, recorded before it changes it and put back afterwards.

A kubelet, containerd, CNI and kube-proxy change machine-wide state: sysctls, iptables
chains, a bridge, network namespaces, cgroups, mounts and a few hard-coded folders. The
record is a file, written before the first change: a run that was killed before it could
clean up is cleaned up by the next one, which finds the record still there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

# The kubelet sets the first three (--protect-kernel-defaults=false); the CNI bridge plugin
# turns on forwarding; kube-proxy sets route_localnet for NodePorts on loopback.
SYSCTLS = (
    "vm.overcommit_memory",
    "kernel.panic",
    "kernel.panic_on_oops",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
)
# Folders the kubelet, containerd's shims and libcni create whatever their flags say.
HARD_CODED_PATHS = (
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",
    "/run/containerd",
)
IPTABLES = ("iptables", "ip6tables")
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"


def _run(*argv: str, check: bool = False, stdin: str | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, input=stdin)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


class HostState:
    """The host's state as it was before the node started, kept in `record_dir`."""

    def __init__(self, record_dir: Path, bridge: str, service_cidr: str) -> None:
        self.dir = record_dir
        self.file = record_dir / "host-state.json"
        self.bridge, self.service_cidr = bridge, service_cidr

    def recorded(self) -> bool:
        return self.file.exists()

    def save(self, mount_roots: list[Path]) -> None:
        """Record what will change (once: an earlier record is the true original)."""
        if self.recorded():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        state = {
            "sysctls": {name: _run("sysctl", "-n", name).strip() for name in SYSCTLS},
            "created_paths": [p for p in HARD_CODED_PATHS if not os.path.exists(p)],
            "iptables": {},
            "mount_roots": [str(p) for p in mount_roots],
        }
        for tool in IPTABLES:
            if shutil.which(f"{tool}-save"):
                state["iptables"][tool] = _run(f"{tool}-save")
        partial = self.file.with_suffix(".new")
        partial.write_text(json.dumps(state))
        partial.replace(self.file)

    def restore(self) -> list[str]:
        """Undo everything the node did; returns what could not be undone (empty: all)."""
        if not self.recorded():
            return []
        state = json.loads(self.file.read_text())
        problems: list[str] = []
        kill_pods()
        kill_shims(state["mount_roots"])
        for root in state["mount_roots"]:
            unmount_under(Path(root))
        for netns in Path("/run/netns").glob("cni-*"):
            subprocess.run(["umount", str(netns)], capture_output=True)
            with contextlib.suppress(OSError):
                netns.unlink()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        subprocess.run(
            ["ip", "route", "del", "unreachable", self.service_cidr], capture_output=True
        )
        problems += remove_kubepods_cgroups()
        for tool, saved in state["iptables"].items():
            restored = subprocess.run(
                [f"{tool}-restore"], input=saved, capture_output=True, text=True
            )
            if restored.returncode != 0:
                problems.append(f"{tool}-restore: {restored.stderr.strip()}")
            # Tables the node created from nothing are not in the record: empty them.
            saved_tables = {line[1:] for line in saved.splitlines() if line.startswith("*")}
            for table in ("filter", "nat", "mangle"):
                if table not in saved_tables:
                    _run(tool, "-t", table, "-F")
                    _run(tool, "-t", table, "-X")
        for name, value in state["sysctls"].items():
            if value:
                _run("sysctl", "-q", "-w", f"{name}={value}")
        for path in state["created_paths"]:
            unmount_under(Path(path))
            shutil.rmtree(path, ignore_errors=True)
        if not problems:
            self.file.unlink()
        return problems


def _cgroup_dirs() -> list[Path]:
    """Every kubepods cgroup folder, deepest first."""
    found: list[Path] = []
    for controller in CGROUP_ROOT.iterdir():
        top = controller / KUBEPODS
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def kill_pods() -> None:
    """SIGKILL every process of every Pod (they all live in the kubepods cgroups)."""
    for _ in range(20):
        pids = set()
        for folder in _cgroup_dirs():
            with contextlib.suppress(OSError):
                pids |= {int(p) for p in (folder / "cgroup.procs").read_text().split()}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def kill_shims(roots: list[str]) -> None:
    """Stop the runc shims of the node's containerd (its socket is under one of `roots`):
    shims outlive containerd by design."""
    marks = [root.encode() for root in roots]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"containerd-shim-runc-v2")
            and any(mark in arg for arg in argv for mark in marks)
        ):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def remove_kubepods_cgroups() -> list[str]:
    problems = []
    for folder in _cgroup_dirs():
        for _ in range(10):
            try:
                folder.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as error:
                last = error
                time.sleep(0.2)
        else:
            problems.append(f"cgroup {folder}: {last}")
    return problems


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    prefix = str(root.resolve())
    points = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=len, reverse=True)


def unmount_under(root: Path) -> None:
    if not root.exists():
        return
    for point in mounts_under(root):
        subprocess.run(["umount", "-l", point], capture_output=True)
