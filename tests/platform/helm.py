"""Real Go Helm (helm-python-sdk's libhelm), pointed at the platform's control plane."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.platform.kube import ControlPlane


def render(chart_dir: Path, values: dict[str, Any] | None = None, **options: Any) -> list[dict]:
    """Render a chart offline; returns its manifests as objects, in template order."""
    manifests = helm.Chart.load(str(chart_dir)).render(values=values, **options)
    objects: list[dict] = []
    for path in sorted(manifests):
        if path.endswith(".yaml") or path.endswith(".yml"):
            objects.extend(doc for doc in yaml.safe_load_all(manifests[path]) if doc)
    return objects


def lint(chart_dir: Path, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """`helm lint --strict`: the report (`messages`, `errors`)."""
    return helm.lint(str(chart_dir), values, strict=True)


class Helm:
    """Install, upgrade and uninstall releases on the control plane as its admin."""

    def __init__(self, kube: ControlPlane, namespace: str) -> None:
        self.namespace = namespace
        self.config = helm.Config(kubeconfig_path=str(kube.kubeconfig), namespace=namespace)

    def install(self, chart_dir: Path, release: str, values: dict[str, Any] | None = None) -> Any:
        return self.config.install(
            helm.Chart.load(str(chart_dir)), release, values, namespace=self.namespace, timeout=120
        )

    def upgrade(self, chart_dir: Path, release: str, values: dict[str, Any] | None = None) -> Any:
        return self.config.upgrade(
            helm.Chart.load(str(chart_dir)), release, values, namespace=self.namespace, timeout=120
        )

    def uninstall(self, release: str) -> Any:
        return self.config.uninstall(release)
