"""Install, upgrade and uninstall the chart with real Go Helm on the real control plane."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from kingest.operator.spec import GROUP, PLURAL, VERSION
from tests.chart.conftest import CHART, CRD_NAME, Release, ingestion_body, wait_established
from tests.platform.cluster import Cluster

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STATUS = {
    "phase": "Succeeded",
    "lastLoadId": "1764000000.123456",
    "observedGeneration": 1,
    "message": "loaded 1000 rows",
}


def example_spec() -> dict[str, Any]:
    docs = yaml.safe_load_all((EXAMPLES / "duckdb-to-s3.yaml").read_text())
    return next(d for d in docs if d["kind"] == "Ingestion")["spec"]


def create_ingestion_with_status(api: k8s.ApiClient, namespace: str, name: str) -> dict:
    custom = k8s.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, ingestion_body(name, example_spec())
    )
    return custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": STATUS}
    )


def get_ingestion(api: k8s.ApiClient, namespace: str, name: str) -> dict:
    return k8s.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )


def read_crd(api: k8s.ApiClient) -> dict[str, Any]:
    crd = k8s.ApiextensionsV1Api(api).read_custom_resource_definition(CRD_NAME)
    return api.sanitize_for_serialization(crd)


def exists(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except k8s.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def previous_chart(tmp_path: Path) -> Path:
    """The chart as its previous version shipped it: an older CRD, without the
    `Last Load ID` column and without `spec.runner.ttlSecondsAfterFinished`."""
    chart = tmp_path / "kingest-previous"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = meta["appVersion"] = "0.0.9"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    crd_file = next((chart / "files" / "crds").glob("*.yaml"))
    crd = yaml.safe_load(crd_file.read_text())
    version = crd["spec"]["versions"][0]
    version["additionalPrinterColumns"] = [
        c for c in version["additionalPrinterColumns"] if c["name"] != "Last Load ID"
    ]
    runner = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["runner"]
    del runner["properties"]["ttlSecondsAfterFinished"]
    crd_file.write_text(yaml.safe_dump(crd))
    return chart


def test_install_creates_the_crd_and_the_operator(
    release: Release, kube_api: k8s.ApiClient, namespace: str
) -> None:
    release.install()
    crd = wait_established(kube_api)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    deployment = release.deployment()
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == release.fullname
    core, rbac = k8s.CoreV1Api(kube_api), k8s.RbacAuthorizationV1Api(kube_api)
    assert exists(core.read_namespaced_service_account, release.fullname, namespace)
    assert exists(rbac.read_cluster_role, release.fullname)
    assert exists(rbac.read_cluster_role_binding, release.fullname)
    assert exists(core.read_namespaced_service, f"{release.fullname}-metrics", namespace)


def test_uninstall_keeps_the_crd_and_every_ingestion_with_its_status(
    release: Release, kube_api: k8s.ApiClient, namespace: str, apps_namespace: str
) -> None:
    release.install()
    created = create_ingestion_with_status(kube_api, apps_namespace, "kept")
    release.uninstall()

    assert exists(k8s.ApiextensionsV1Api(kube_api).read_custom_resource_definition, CRD_NAME)
    kept = get_ingestion(kube_api, apps_namespace, "kept")
    assert kept["status"] == STATUS
    assert kept["spec"] == created["spec"]
    assert kept["metadata"]["uid"] == created["metadata"]["uid"]
    # Everything else of the release is gone.
    rbac = k8s.RbacAuthorizationV1Api(kube_api)
    assert not exists(rbac.read_cluster_role, release.fullname)
    assert not exists(rbac.read_cluster_role_binding, release.fullname)
    assert not exists(
        k8s.AppsV1Api(kube_api).read_namespaced_deployment, release.fullname, namespace
    )


def test_reinstall_after_uninstall_takes_the_kept_crd_back(
    release: Release, kube_api: k8s.ApiClient, apps_namespace: str
) -> None:
    release.install()
    create_ingestion_with_status(kube_api, apps_namespace, "survivor")
    release.uninstall()
    # No adoption step: same release name.
    release.helm.install(CHART, release.name, release.values(None))
    release.installed = True
    assert get_ingestion(kube_api, apps_namespace, "survivor")["status"] == STATUS


def test_upgrade_from_the_previous_chart_upgrades_the_crd_and_keeps_ingestions(
    release: Release, kube_api: k8s.ApiClient, apps_namespace: str, tmp_path: Path
) -> None:
    release.install(chart=previous_chart(tmp_path))
    columns = [
        c["name"] for c in read_crd(kube_api)["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert "Last Load ID" not in columns
    before = create_ingestion_with_status(kube_api, apps_namespace, "old")

    release.upgrade()

    crd = read_crd(kube_api)
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert "Last Load ID" in columns
    after = get_ingestion(kube_api, apps_namespace, "old")
    assert after["spec"] == before["spec"]
    assert after["status"] == STATUS
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    # The new field is part of the stored schema now (the old CRD pruned it away).
    custom = k8s.CustomObjectsApi(kube_api)
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        apps_namespace,
        PLURAL,
        "old",
        {"spec": {"runner": {"ttlSecondsAfterFinished": 60}}},
    )
    assert (
        get_ingestion(kube_api, apps_namespace, "old")["spec"]["runner"]["ttlSecondsAfterFinished"]
        == 60
    )


def test_kubectl_shows_the_new_printer_column_after_upgrade(
    release: Release,
    kube: Cluster,
    kube_api: k8s.ApiClient,
    apps_namespace: str,
    tmp_path: Path,
) -> None:
    release.install(chart=previous_chart(tmp_path))
    create_ingestion_with_status(kube_api, apps_namespace, "shown")
    release.upgrade()
    table = kube.kubectl("get", "ingestions", "-n", apps_namespace).stdout
    assert "LAST LOAD ID" in table and STATUS["lastLoadId"] in table


def test_kubectl_shows_ready_first_and_schedule_and_suspend_when_wide(
    release: Release, kube: Cluster, kube_api: k8s.ApiClient, apps_namespace: str
) -> None:
    release.install({"replicaCount": 0})
    spec = example_spec() | {"schedule": "0 3 * * *", "suspend": True}
    custom = k8s.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, apps_namespace, PLURAL, ingestion_body("nightly", spec)
    )
    ready = {"type": "Ready", "status": "True", "reason": "Succeeded", "message": "loaded"}
    ready["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        apps_namespace,
        PLURAL,
        "nightly",
        {"status": STATUS | {"conditions": [ready]}},
    )
    header, row = kube.kubectl("get", "ingestions", "-n", apps_namespace).stdout.splitlines()
    assert header.split()[:3] == ["NAME", "READY", "PHASE"]
    assert row.split()[:3] == ["nightly", "True", "Succeeded"]
    wide = kube.kubectl("get", "ingestions", "-n", apps_namespace, "-o", "wide").stdout
    header, row = wide.splitlines()
    assert "SCHEDULE" in header and "SUSPEND" in header
    assert "0 3 * * *" in row and "true" in row
