"""The platform's one-node cluster works as a cluster does: the real Job controller, scheduler
and kubelet run Pods as containers of the kingest image, and the kubelet reports what it saw."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.platform.cluster import Cluster
from tests.platform.node import Node, PlatformUnavailable
from tests.platform.s3 import S3Server
from tests.platform.s3server import CONTROL_PATH

pytestmark = pytest.mark.cluster


def _job(image: str, name: str, command: list[str], **container: Any) -> dict[str, Any]:
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
                        {"name": "main", "image": image, "command": command} | container
                    ],
                }
            },
        },
    }


def _wait_for_job(api: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    batch = k8s.BatchV1Api(api)
    deadline = time.monotonic() + 90
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


def _waiting(api: k8s.ApiClient, namespace: str, job: str) -> dict[str, Any]:
    """The container's waiting state, once the kubelet reports one."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = k8s.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"job-name={job}")
        for pod in pods.items:
            for status in pod.status.container_statuses or []:
                if status.state.waiting and status.state.waiting.reason != "ContainerCreating":
                    return api.sanitize_for_serialization(status.state.waiting)
        time.sleep(0.2)
    raise TimeoutError(f"no waiting reason for job {job}")


def test_a_job_runs_as_a_container_of_the_image_and_its_log_is_readable(
    kube: Cluster, kube_api: k8s.ApiClient, namespace: str
) -> None:
    k8s.BatchV1Api(kube_api).create_namespaced_job(
        namespace, _job(kube.image, "ok", ["python", "-c", "print(1)"])
    )
    job = _wait_for_job(kube_api, namespace, "ok")
    assert job["status"].get("succeeded") == 1
    pod = _only_pod(kube_api, namespace, "ok")
    assert pod["status"]["phase"] == "Succeeded"
    container = pod["status"]["containerStatuses"][0]
    assert container["containerID"].startswith("containerd://")
    assert container["imageID"].startswith("sha256:")
    assert kube.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout == "1\n"


def test_a_failing_container_fails_the_job_with_its_exit_code(
    kube: Cluster, kube_api: k8s.ApiClient, namespace: str
) -> None:
    command = ["python", "-c", "import sys; sys.exit(3)"]
    k8s.BatchV1Api(kube_api).create_namespaced_job(namespace, _job(kube.image, "three", command))
    job = _wait_for_job(kube_api, namespace, "three")
    assert job["status"].get("failed") == 1
    state = _only_pod(kube_api, namespace, "three")["status"]["containerStatuses"][0]["state"]
    assert state["terminated"]["exitCode"] == 3
    assert state["terminated"]["reason"] == "Error"


def test_a_missing_secret_key_leaves_the_container_waiting_naming_it(
    kube: Cluster, kube_api: k8s.ApiClient, namespace: str
) -> None:
    k8s.CoreV1Api(kube_api).create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"present": "x"}}
    )
    env = [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "absent"}}}]
    k8s.BatchV1Api(kube_api).create_namespaced_job(
        namespace, _job(kube.image, "nokey", ["python", "-c", "print(1)"], env=env)
    )
    assert _waiting(kube_api, namespace, "nokey") == {
        "reason": "CreateContainerConfigError",
        "message": f"couldn't find key absent in Secret {namespace}/creds",
    }


def test_a_missing_secret_is_named(kube: Cluster, kube_api: k8s.ApiClient, namespace: str) -> None:
    env = [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]
    k8s.BatchV1Api(kube_api).create_namespaced_job(
        namespace, _job(kube.image, "nosecret", ["python", "-c", "print(1)"], env=env)
    )
    assert _waiting(kube_api, namespace, "nosecret") == {
        "reason": "CreateContainerConfigError",
        "message": 'secret "nope" not found',
    }


def test_an_image_the_node_lacks_with_pull_policy_never_is_err_image_never_pull(
    kube: Cluster, kube_api: k8s.ApiClient, namespace: str
) -> None:
    typo = kube.image.replace("kingest", "kingset")
    k8s.BatchV1Api(kube_api).create_namespaced_job(
        namespace, _job(typo, "typo", ["python"], imagePullPolicy="Never")
    )
    waiting = _waiting(kube_api, namespace, "typo")
    assert waiting["reason"] == "ErrImageNeverPull"
    assert typo in waiting["message"]


def test_the_termination_message_and_secret_env_reach_the_pod_status(
    kube: Cluster, kube_api: k8s.ApiClient, namespace: str
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
        namespace, _job(kube.image, "msg", ["python", "-c", script], env=env)
    )
    _wait_for_job(kube_api, namespace, "msg")
    terminated = _only_pod(kube_api, namespace, "msg")["status"]["containerStatuses"][0]["state"]
    assert terminated["terminated"]["message"] == '{"load_id": "t3rc3s"}'


def test_a_claim_is_a_local_volume_writable_by_the_fs_group(
    kube: Cluster, kube_api: k8s.ApiClient, namespace: str
) -> None:
    folder = kube.claim(namespace, "duck")
    job = _job(kube.image, "pvc", ["python", "-c", "open('/data/out.txt', 'w').write('kept')"])
    spec = job["spec"]["template"]["spec"]
    spec["securityContext"] = {"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532}
    spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "duck"}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    k8s.BatchV1Api(kube_api).create_namespaced_job(namespace, job)
    assert _wait_for_job(kube_api, namespace, "pvc")["status"].get("succeeded") == 1
    assert (folder / "out.txt").read_text() == "kept"
    assert (folder / "out.txt").stat().st_uid == 65532
    assert folder.stat().st_gid == 65532  # the kubelet applied fsGroup to the volume


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(
    kube: Cluster, kube_api: k8s.ApiClient, namespace: str
) -> None:
    script = (
        "from kubernetes import client, config; config.load_incluster_config();"
        "print(client.Configuration.get_default_copy().host,"
        " client.VersionApi().get_code().git_version)"
    )
    k8s.BatchV1Api(kube_api).create_namespaced_job(
        namespace, _job(kube.image, "api", ["python", "-c", script])
    )
    job = _wait_for_job(kube_api, namespace, "api")
    pod = _only_pod(kube_api, namespace, "api")
    log = kube.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
    assert job["status"].get("succeeded") == 1, log
    assert log.split() == ["https://10.96.0.1:443", "v1.20.2"]


def test_a_pod_reaches_the_s3_server_at_the_node_ip(
    kube: Cluster, kube_api: k8s.ApiClient, namespace: str, cluster_s3: S3Server
) -> None:
    url = cluster_s3.endpoint_url + CONTROL_PATH
    script = f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode())"
    k8s.BatchV1Api(kube_api).create_namespaced_job(
        namespace, _job(kube.image, "s3", ["python", "-c", script])
    )
    job = _wait_for_job(kube_api, namespace, "s3")
    pod = _only_pod(kube_api, namespace, "s3")
    assert pod["status"]["podIP"].startswith("10.244.")  # on the Pod network, not the host's
    log = kube.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
    assert job["status"].get("succeeded") == 1, log
    assert json.loads(log) == []


def test_a_second_node_on_the_machine_is_refused_at_once(kube: Cluster, tmp_path: Any) -> None:
    started = time.monotonic()
    with pytest.raises(PlatformUnavailable, match="another kingest platform"):
        Node(tmp_path, kube.binaries, kube.server, kube.ca_file, {}, "127.0.0.1", [])
    assert time.monotonic() - started < 5


def test_a_service_account_client_is_held_to_its_rbac(
    kube: Cluster, kube_api: k8s.ApiClient, namespace: str
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


def test_kubectl_reads_the_cluster(kube: Cluster, namespace: str) -> None:
    result = kube.kubectl("get", "namespace", namespace, "-o", "name")
    assert result.stdout.strip() == f"namespace/{namespace}"
