"""The control plane, the real Job controller and the kubelet harness work together."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.platform.kube import ControlPlane
from tests.platform.kubelet import Kubelet


def _job(name: str, command: list[str], **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": "python:3.11-slim", "command": command}
                        | container
                    ],
                }
            },
        },
    }


def _wait_for_job(api: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    batch = k8s.BatchV1Api(api)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = api.sanitize_for_serialization(batch.read_namespaced_job(name, namespace))
        for condition in job.get("status", {}).get("conditions") or []:
            if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
                return job
        time.sleep(0.2)
    raise TimeoutError(f"job {namespace}/{name} did not finish")


def _only_pod(api: k8s.ApiClient, namespace: str, job: str) -> dict[str, Any]:
    pods = k8s.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"job-name={job}")
    assert len(pods.items) == 1
    return api.sanitize_for_serialization(pods.items[0])


def _wait_for_pod(api: k8s.ApiClient, namespace: str, job: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pods = k8s.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"job-name={job}")
        if pods.items:
            return api.sanitize_for_serialization(pods.items[0])
        time.sleep(0.1)
    raise TimeoutError(f"no pod for job {job}")


def test_a_job_whose_container_succeeds_completes(
    kube_api: k8s.ApiClient, namespace: str, kubelet: Kubelet
) -> None:
    k8s.BatchV1Api(kube_api).create_namespaced_job(
        namespace, _job("ok", ["python", "-c", "print(1)"])
    )
    job = _wait_for_job(kube_api, namespace, "ok")
    assert job["status"].get("succeeded") == 1
    pod = _only_pod(kube_api, namespace, "ok")
    assert pod["status"]["phase"] == "Succeeded"
    assert kubelet.runs[(namespace, pod["metadata"]["name"])].logs() == "1\n"


def test_a_failing_container_fails_the_job_with_its_exit_code(
    kube_api: k8s.ApiClient, namespace: str, kubelet: Kubelet
) -> None:
    command = ["python", "-c", "import sys; sys.exit(3)"]
    k8s.BatchV1Api(kube_api).create_namespaced_job(namespace, _job("three", command))
    job = _wait_for_job(kube_api, namespace, "three")
    assert job["status"].get("failed") == 1
    state = _only_pod(kube_api, namespace, "three")["status"]["containerStatuses"][0]["state"]
    assert state["terminated"]["exitCode"] == 3
    assert state["terminated"]["reason"] == "Error"


def test_a_missing_secret_key_leaves_the_container_waiting(
    kube_api: k8s.ApiClient, namespace: str, kubelet: Kubelet
) -> None:
    k8s.CoreV1Api(kube_api).create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"present": "x"}}
    )
    env = [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "absent"}}}]
    k8s.BatchV1Api(kube_api).create_namespaced_job(
        namespace, _job("nokey", ["python", "-c", "print(1)"], env=env)
    )
    pod = _wait_for_pod(kube_api, namespace, "nokey")
    run = kubelet.wait_for_run(namespace, pod["metadata"]["name"])
    assert run.waiting_reason == "CreateContainerConfigError"
    waiting = _only_pod(kube_api, namespace, "nokey")["status"]["containerStatuses"][0]["state"]
    assert waiting["waiting"] == {
        "reason": "CreateContainerConfigError",
        "message": f"couldn't find key absent in Secret {namespace}/creds",
    }


def test_a_missing_secret_is_named(
    kube_api: k8s.ApiClient, namespace: str, kubelet: Kubelet
) -> None:
    env = [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]
    k8s.BatchV1Api(kube_api).create_namespaced_job(
        namespace, _job("nosecret", ["python", "-c", "print(1)"], env=env)
    )
    pod = _wait_for_pod(kube_api, namespace, "nosecret")
    run = kubelet.wait_for_run(namespace, pod["metadata"]["name"])
    assert (run.waiting_reason, run.waiting_message) == (
        "CreateContainerConfigError",
        'secret "nope" not found',
    )


def test_the_termination_message_and_secret_env_reach_the_pod_status(
    kube_api: k8s.ApiClient, namespace: str, kubelet: Kubelet
) -> None:
    k8s.CoreV1Api(kube_api).create_namespaced_secret(
        namespace,
        {"metadata": {"name": "creds"}, "data": {"token": base64.b64encode(b"s3cr3t").decode()}},
    )
    script = (
        "import os; open('/dev/termination-log', 'w').write("
        "'{\"load_id\": \"' + os.environ['TOKEN'][::-1] + '\"}')"
    )
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    k8s.BatchV1Api(kube_api).create_namespaced_job(
        namespace, _job("msg", ["python", "-c", script], env=env)
    )
    _wait_for_job(kube_api, namespace, "msg")
    terminated = _only_pod(kube_api, namespace, "msg")["status"]["containerStatuses"][0]["state"]
    assert terminated["terminated"]["message"] == '{"load_id": "t3rc3s"}'


def test_a_pvc_volume_is_one_folder_per_claim(
    kube_api: k8s.ApiClient, namespace: str, kubelet: Kubelet
) -> None:
    job = _job("pvc", ["python", "-c", "open('/data/out.txt', 'w').write('kept')"])
    spec = job["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "duck"}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    k8s.BatchV1Api(kube_api).create_namespaced_job(namespace, job)
    assert _wait_for_job(kube_api, namespace, "pvc")["status"].get("succeeded") == 1
    assert (kubelet.claim_path(namespace, "duck") / "out.txt").read_text() == "kept"


def test_a_service_account_client_is_held_to_its_rbac(
    kube: ControlPlane, kube_api: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(kube_api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
    as_robot = k8s.CoreV1Api(kube.client_as(namespace, "robot"))
    with pytest.raises(k8s.ApiException) as denied:
        as_robot.list_namespaced_config_map(namespace)
    assert denied.value.status == 403
    k8s.RbacAuthorizationV1Api(kube_api).create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "read-cm"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        },
    )
    k8s.RbacAuthorizationV1Api(kube_api).create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "robot-read-cm"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cm"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": namespace}],
        },
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            as_robot.list_namespaced_config_map(namespace)
            break
        except k8s.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_kubectl_reads_the_cluster(kube: ControlPlane, namespace: str) -> None:
    result = kube.kubectl("get", "namespace", namespace, "-o", "name")
    assert result.stdout.strip() == f"namespace/{namespace}"


def test_mount_paths_are_mapped_once_even_under_another_mount(
    kube_api: k8s.ApiClient, namespace: str, kubelet: Kubelet
) -> None:
    # The harness keeps its folders under the machine's /tmp; the Pod mounts an emptyDir at
    # /tmp too. The claim's local folder must not be rewritten again by the /tmp mount.
    script = "import os, sys; open(sys.argv[1], 'w').write(os.environ['OUT'])"
    job = _job("twice", ["python", "-c", script, "/data/out.txt"])
    spec = job["spec"]["template"]["spec"]
    spec["volumes"] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "nested"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    container = spec["containers"][0]
    container["volumeMounts"] = [
        {"name": "data", "mountPath": "/data"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    container["env"] = [{"name": "OUT", "value": "/data/x and /tmp/y"}]
    k8s.BatchV1Api(kube_api).create_namespaced_job(namespace, job)
    assert _wait_for_job(kube_api, namespace, "twice")["status"].get("succeeded") == 1
    claim = kubelet.claim_path(namespace, "nested")
    written = (claim / "out.txt").read_text()
    pod_tmp = written.split(" and ")[1]
    assert written.startswith(f"{claim}/x and ")
    assert pod_tmp.endswith("/volumes/tmp/y") and str(claim) not in pod_tmp
