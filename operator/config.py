"""What `kingest operator` is configured with, and how it reaches the API server.

`kingest operator` builds one `OperatorConfig` from its flags and environment and hands it to
kopf in the operator's `memo`; the startup handler builds everything else from it (see
`kingest.operator.handlers`). Nothing here is created at import.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from kingest.operator.job import RunnerDefaults

DEFAULT_IMAGE = f"ghcr.io/kingest/kingest:{importlib.metadata.version('kingest')}"


def _port(variable: str) -> int | None:
    value = os.environ.get(variable)
    return int(value) if value else None


@dataclass
class OperatorConfig:
    """The operator's configuration (flags, or the environment the chart sets)."""

    runner_image: str = field(
        default_factory=lambda: os.environ.get("KINGEST_RUNNER_IMAGE", DEFAULT_IMAGE)
    )
    # `{"resources": {...}, "securityContext": {...}}` for every runner Pod (the chart's values).
    runner_defaults: dict[str, Any] = field(
        default_factory=lambda: json.loads(os.environ.get("KINGEST_RUNNER_DEFAULTS") or "{}")
    )
    # Reconciles at once (each awaits the API server on the event loop), and as many
    # connections for their calls.
    workers: int = 48
    # Namespaces whose Ingestions the operator runs; empty: all of them.
    namespaces: list[str] = field(default_factory=list)
    # Serve /metrics on this port (0: any free port; None: not at all).
    metrics_port: int | None = field(default_factory=lambda: _port("KINGEST_METRICS_PORT"))
    # Serve the validating admission webhook on this port, with tls.crt / tls.key from
    # `webhook_cert_dir` (None: no webhook; see `kingest.operator.admission`).
    webhook_port: int | None = field(default_factory=lambda: _port("KINGEST_WEBHOOK_PORT"))
    webhook_cert_dir: str = field(
        default_factory=lambda: os.environ.get("KINGEST_WEBHOOK_CERT_DIR") or "/etc/kingest/webhook"
    )

    def runner(self) -> RunnerDefaults:
        """The defaults `render_job` applies where an Ingestion's spec sets nothing."""
        return RunnerDefaults(
            image=self.runner_image,
            resources=self.runner_defaults.get("resources") or None,
            security_context=self.runner_defaults.get("securityContext") or {},
        )

    def api_configuration(self) -> k8s.Configuration:
        """In-cluster credentials, or the kubeconfig ($KUBECONFIG)."""
        configuration = k8s.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(client_configuration=configuration)
        return configuration
