"""Real Helm renders, lints and installs charts into the platform's control plane."""

from pathlib import Path

from kubernetes import client as k8s

from tests.platform import helm
from tests.platform.kube import ControlPlane

MINIMAL = Path(__file__).parent / "charts" / "minimal"


def test_a_minimal_chart_renders_with_values() -> None:
    (configmap,) = helm.render(MINIMAL, {"greeting": "moin"}, name="demo")
    assert configmap["metadata"]["name"] == "demo-greeting"
    assert configmap["data"] == {"greeting": "moin"}


def test_a_minimal_chart_lints_clean() -> None:
    report = helm.lint(MINIMAL)
    assert report["errors"] in (None, [])
    assert [m for m in report["messages"] or [] if m["severity"] >= 2] == []


def test_a_minimal_chart_installs_upgrades_and_uninstalls(
    kube: ControlPlane, kube_api: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(kube_api)
    release = helm.Helm(kube, namespace)
    release.install(MINIMAL, "smoke")
    assert core.read_namespaced_config_map("smoke-greeting", namespace).data == {
        "greeting": "hello"
    }
    release.upgrade(MINIMAL, "smoke", {"greeting": "again"})
    assert core.read_namespaced_config_map("smoke-greeting", namespace).data == {
        "greeting": "again"
    }
    release.uninstall("smoke")
    names = [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items]
    assert "smoke-greeting" not in names
