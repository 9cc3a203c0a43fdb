"""A kubelet stand-in: runs the Pods of Jobs as local processes and reports their status.

There is no container runtime here, so the harness plays the node's part the way a kubelet
would, against the real API server:

- picks up Pending Pods in the namespaces it serves;
- resolves the container's environment (`value` with `$(VAR)` expansion, `valueFrom`
  `secretKeyRef` / `configMapKeyRef` / `fieldRef`, `envFrom`); a missing Secret, ConfigMap or
  key leaves the container Waiting with reason `CreateContainerConfigError`, as on a node;
- an image it does not know leaves the container Waiting with `ImagePullBackOff`;
- maps volumes to local folders (emptyDir: one per Pod; PVC: one per claim, kept across Pods;
  Secret / ConfigMap: files written from the object) and the termination-message path to a
  local file. Paths are mapped by rewriting mount paths in the command, args and env values:
  the one liberty taken, since the process shares this machine's filesystem;
- runs `command`/`args` (an image's entrypoint comes from `images`), then writes the Pod
  status: phase, exit code, reason, termination message (at most 4096 bytes; with
  `FallbackToLogsOnError`, the log tail when the process wrote none and failed);
- kills the process when its Pod is deleted (a Job's deadline, a replaced run).

The real Job controller then completes or fails the Job.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048


class ContainerConfigError(Exception):
    """The container cannot be configured (reason `CreateContainerConfigError`)."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_images() -> dict[str, list[str]]:
    """Image name (without tag) -> entrypoint, for the images this machine can 'run'."""
    kingest = shutil.which("kingest", path=str(Path(sys.executable).parent)) or "kingest"
    return {
        "kingest": [kingest],
        "ghcr.io/kingest/kingest": [kingest],
        "python": [],
        "busybox": [],
    }


def _image_name(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return name


@dataclass
class PodRun:
    """What the harness did with one Pod."""

    namespace: str
    name: str
    exit_code: int | None = None
    log_path: Path | None = None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


class Kubelet:
    """Runs the Pods of the namespaces it serves; see the module docstring."""

    def __init__(
        self,
        api: k8s.ApiClient,
        root: Path,
        images: dict[str, list[str]] | None = None,
        base_env: dict[str, str] | None = None,
    ) -> None:
        self.api = api
        self.core = k8s.CoreV1Api(api)
        self.root = root
        self.images = images if images is not None else default_images()
        self.base_env = base_env or {}
        self.runs: dict[tuple[str, str], PodRun] = {}
        self._namespaces: set[str] = set()
        self._processes: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: watch.Watch | None = None
        self._thread = threading.Thread(target=self._watch_loop, name="kubelet", daemon=True)
        self._thread.start()

    # -- what tests use -------------------------------------------------------------------

    def serve(self, namespace: str) -> None:
        """Start running the Pods of `namespace` (those already Pending included)."""
        with self._lock:
            self._namespaces.add(namespace)
        for pod in self.core.list_namespaced_pod(namespace).items:
            self._consider(self.api.sanitize_for_serialization(pod))

    def release(self, namespace: str) -> None:
        """Stop taking new Pods of `namespace`: they stay Pending, as with no node."""
        with self._lock:
            self._namespaces.discard(namespace)

    def wait_for_run(self, namespace: str, name: str, timeout: float = 60) -> PodRun:
        """The run of Pod `namespace/name`, once its process has exited or it is Waiting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.runs.get((namespace, name))
            if run and (run.exit_code is not None or run.waiting_reason):
                return run
            time.sleep(0.05)
        raise TimeoutError(f"pod {namespace}/{name} did not run within {timeout} s")

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher:
            self._watcher.stop()
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self._thread.join(timeout=10)

    # -- the node's work ------------------------------------------------------------------

    def _watch_loop(self) -> None:
        while not self._stopping.is_set():
            self._watcher = watch.Watch()
            try:
                for event in self._watcher.stream(
                    self.core.list_pod_for_all_namespaces, timeout_seconds=30
                ):
                    pod = self.api.sanitize_for_serialization(event["object"])
                    if event["type"] == "DELETED":
                        self._kill(pod)
                    else:
                        self._consider(pod)
                    if self._stopping.is_set():
                        return
            except Exception:
                if not self._stopping.is_set():
                    time.sleep(0.5)

    def _consider(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        if meta.get("deletionTimestamp"):
            self._kill(pod)
            return
        with self._lock:
            if meta["namespace"] not in self._namespaces or key in self.runs:
                return
            if pod.get("status", {}).get("phase", "Pending") != "Pending":
                return
            self.runs[key] = PodRun(*key)
        threading.Thread(
            target=self._run_pod, args=(pod,), name=f"pod-{key[1]}", daemon=True
        ).start()

    def _kill(self, pod: dict[str, Any]) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        with self._lock:
            process = self._processes.get(key)
        if process and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)

    def _run_pod(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        run = self.runs[(meta["namespace"], meta["name"])]
        container = spec["containers"][0]
        pod_dir = self.root / "pods" / meta["namespace"] / meta["name"]
        pod_dir.mkdir(parents=True, exist_ok=True)
        try:
            entrypoint = self._entrypoint(container["image"])
            paths = self._mount_volumes(pod, container, pod_dir)
            env = self._resolve_env(pod, container)
        except ContainerConfigError as error:
            self._report_waiting(pod, run, "CreateContainerConfigError", str(error))
            return
        except LookupError as error:
            self._report_waiting(pod, run, "ImagePullBackOff", str(error))
            return

        message_path = container.get("terminationMessagePath", "/dev/termination-log")
        message_file = pod_dir / "termination-log"
        message_file.write_bytes(b"")
        paths[message_path] = str(message_file)

        command = [_expand(arg, env) for arg in container.get("command") or entrypoint]
        args = [_expand(arg, env) for arg in container.get("args") or []]
        if not container.get("command") and not container.get("args") and not entrypoint:
            self._report_waiting(pod, run, "CreateContainerError", "no command specified")
            return
        argv = [_map_paths(a, paths) for a in command + args]
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        elif argv[0] == "kingest":
            argv[0] = self.images["kingest"][0]
        process_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(pod_dir),
            "HOSTNAME": meta["name"],
            # This "node" has no instance metadata service; an AWS SDK without credentials
            # must fail here rather than call the link-local metadata address.
            "AWS_EC2_METADATA_DISABLED": "true",
            **self.base_env,
            **{k: _map_paths(v, paths) for k, v in env.items()},
        }
        run.argv, run.env = argv, process_env
        run.log_path = pod_dir / "container.log"
        started = _now()
        workdir = container.get("workingDir")
        cwd = _map_paths(workdir, paths) if workdir else str(pod_dir)
        Path(cwd).mkdir(parents=True, exist_ok=True)
        with open(run.log_path, "wb") as log:
            try:
                process = subprocess.Popen(
                    argv,
                    env=process_env,
                    cwd=cwd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as error:
                self._report_waiting(pod, run, "RunContainerError", str(error))
                return
            with self._lock:
                self._processes[(meta["namespace"], meta["name"])] = process
            self._patch_status(
                pod,
                {
                    "phase": "Running",
                    "startTime": started,
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [
                        self._container_status(container, {"running": {"startedAt": started}})
                    ],
                },
            )
            exit_code = process.wait()
        if exit_code < 0:  # killed by a signal, reported as 128 + signal like a runtime does
            exit_code = 128 - exit_code
        run.exit_code = exit_code
        message = message_file.read_bytes()[:MAX_TERMINATION_MESSAGE].decode(errors="replace")
        fallback = container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if not message and exit_code != 0 and fallback:
            message = _log_tail(run.log_path)
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": started,
            "finishedAt": _now(),
        }
        if message:
            terminated["message"] = message
        restart_never = spec.get("restartPolicy") in ("Never", "OnFailure")
        phase = "Succeeded" if exit_code == 0 else "Failed"
        with contextlib.suppress(k8s.ApiException):
            self._patch_status(
                pod,
                {
                    "phase": phase if restart_never else "Running",
                    "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [
                        self._container_status(container, {"terminated": terminated})
                    ],
                },
            )

    def _entrypoint(self, image: str) -> list[str]:
        name = _image_name(image)
        for known, entrypoint in self.images.items():
            if name == known or name.endswith("/" + known):
                return entrypoint
        raise LookupError(
            f'Back-off pulling image "{image}": the kubelet harness knows no such image'
        )

    def _container_status(self, container: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": container["name"],
            "image": container["image"],
            "imageID": "",
            "ready": "running" in state,
            "restartCount": 0,
            "started": "running" in state,
            "state": state,
        }

    def _report_waiting(self, pod: dict[str, Any], run: PodRun, reason: str, message: str) -> None:
        run.waiting_reason, run.waiting_message = reason, message
        container = pod["spec"]["containers"][0]
        self._patch_status(
            pod,
            {
                "phase": "Pending",
                "containerStatuses": [
                    self._container_status(
                        container, {"waiting": {"reason": reason, "message": message}}
                    )
                ],
            },
        )

    def _patch_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        self.core.patch_namespaced_pod_status(
            pod["metadata"]["name"], pod["metadata"]["namespace"], {"status": status}
        )

    # -- configuration, as the kubelet resolves it -----------------------------------------

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except k8s.ApiException as error:
            if error.status == 404:
                raise ContainerConfigError(f'secret "{name}" not found') from None
            raise
        data = secret.data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def _config_map(self, namespace: str, name: str) -> dict[str, str]:
        try:
            return self.core.read_namespaced_config_map(name, namespace).data or {}
        except k8s.ApiException as error:
            if error.status == 404:
                raise ContainerConfigError(f'configmap "{name}" not found') from None
            raise

    def _resolve_env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                ref, kind = source["secretRef"], "secret"
            else:
                ref, kind = source["configMapRef"], "configmap"
            try:
                values = (
                    self._secret(namespace, ref["name"])
                    if kind == "secret"
                    else self._config_map(namespace, ref["name"])
                )
            except ContainerConfigError:
                if ref.get("optional"):
                    continue
                raise
            env.update({prefix + k: v for k, v in values.items()})
        for var in container.get("env") or []:
            if "valueFrom" not in var:
                env[var["name"]] = _expand(var.get("value", ""), env)
                continue
            value = self._value_from(pod, var["valueFrom"])
            if value is not None:
                env[var["name"]] = value
        return env

    def _value_from(self, pod: dict[str, Any], source: dict[str, Any]) -> str | None:
        namespace = pod["metadata"]["namespace"]
        for ref_kind, label, load in (
            ("secretKeyRef", "Secret", self._secret),
            ("configMapKeyRef", "ConfigMap", self._config_map),
        ):
            if ref_kind not in source:
                continue
            ref = source[ref_kind]
            try:
                values = load(namespace, ref["name"])
            except ContainerConfigError:
                if ref.get("optional"):
                    return None
                raise
            if ref["key"] not in values:
                if ref.get("optional"):
                    return None
                raise ContainerConfigError(
                    f"couldn't find key {ref['key']} in {label} {namespace}/{ref['name']}"
                )
            return values[ref["key"]]
        if "fieldRef" in source:
            return _field(pod, source["fieldRef"]["fieldPath"])
        raise ContainerConfigError(f"unsupported valueFrom {sorted(source)}")

    def _mount_volumes(
        self, pod: dict[str, Any], container: dict[str, Any], pod_dir: Path
    ) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        local: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                local[name] = self.claim_path(namespace, claim)
            elif "secret" in volume or "configMap" in volume:
                is_secret = "secret" in volume
                ref = volume["secret"] if is_secret else volume["configMap"]
                ref_name = ref["secretName"] if is_secret else ref["name"]
                try:
                    values = (
                        self._secret(namespace, ref_name)
                        if is_secret
                        else self._config_map(namespace, ref_name)
                    )
                except ContainerConfigError:
                    if not ref.get("optional"):
                        raise
                    values = {}
                folder = pod_dir / "volumes" / name
                folder.mkdir(parents=True, exist_ok=True)
                items = ref.get("items") or [{"key": k, "path": k} for k in values]
                for item in items:
                    (folder / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                    (folder / item["path"]).write_text(values.get(item["key"], ""))
                local[name] = folder
            else:  # emptyDir and anything node-local
                local[name] = pod_dir / "volumes" / name
            local[name].mkdir(parents=True, exist_ok=True)
        paths: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            target = local[mount["name"]]
            if mount.get("subPath"):
                target = target / mount["subPath"]
            paths[mount["mountPath"].rstrip("/") or "/"] = str(target)
        return paths

    def claim_path(self, namespace: str, claim: str) -> Path:
        """The local folder standing for PersistentVolumeClaim `namespace/claim`."""
        path = self.root / "claims" / namespace / claim
        path.mkdir(parents=True, exist_ok=True)
        return path


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion; `$$` escapes, unknown references stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", replace, value)


def _map_paths(value: str, paths: dict[str, str]) -> str:
    """Container paths in `value` replaced by their local folders, in one pass.

    One pass, longest mount first: a local folder that itself lies under another mount path
    (a harness root under /tmp, and a Pod with a /tmp emptyDir) is never mapped twice.
    """
    if not paths:
        return value
    mounts = sorted(paths, key=len, reverse=True)
    pattern = "|".join(re.escape(m) for m in mounts)
    return re.sub(
        rf"(?:{pattern})(?=/|$|[^A-Za-z0-9_.-])", lambda match: paths[match.group(0)], value
    )


def _field(pod: dict[str, Any], path: str) -> str:
    meta = pod["metadata"]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod["spec"].get("nodeName") or "kingest-harness",
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path not in simple:
        raise ContainerConfigError(f"unsupported fieldRef {path}")
    return simple[path]


def _log_tail(path: Path) -> str:
    lines = path.read_bytes().splitlines()[-FALLBACK_LOG_LINES:]
    return b"\n".join(lines)[-FALLBACK_LOG_BYTES:].decode(errors="replace")


@contextlib.contextmanager
def running_kubelet(api: k8s.ApiClient, root: Path, **kwargs: Any) -> Iterator[Kubelet]:
    kubelet = Kubelet(api, root, **kwargs)
    try:
        yield kubelet
    finally:
        kubelet.stop()
