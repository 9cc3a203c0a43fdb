"""`kingest operator`: run the kopf operator that turns Ingestions into Jobs.

    kingest operator [--all-namespaces | --namespace NS ...] [--runner-image IMAGE]
                     [--liveness URL] [--readiness URL] [--metrics-port PORT]
                     [--webhook-port PORT] [--webhook-cert-dir DIR]
                     [--log-format text|json] [--verbose]
                     [--leader-election | --no-leader-election] [--lease NAME]
                     [--lease-duration SECONDS]

Watches every namespace unless namespaces are given (flags, or the comma-separated
`KINGEST_WATCH_NAMESPACES`). The runner image defaults to `KINGEST_RUNNER_IMAGE`. It talks to
the cluster with its in-cluster ServiceAccount, or the kubeconfig named by `KUBECONFIG`.
One HTTP server (`kingest.operator.health.ProbeServer`) answers `--liveness`, `--readiness`
and `/metrics` (Prometheus; also on `--metrics-port` / `KINGEST_METRICS_PORT` when given) from
start to exit. Until the API server answers it logs why not every few seconds and
`--readiness` answers 503; then it starts kopf with the operator's configuration and metrics
in kopf's `memo` (`kingest.operator.handlers` builds the rest from them). Test hook:
`KINGEST_CLOCK_FILE` (see `kingest.operator.clock`) replaces the system clock.
Several replicas elect a leader on a `coordination.k8s.io/v1` Lease (`kingest.operator.leader`):
kopf's startup handler waits for the Lease, so only the holder watches and acts; a standby
serves liveness, readiness and /metrics (with `kingest_operator_leader 0`) and takes over
once the leader's Lease expires. Election is on
by default when `KINGEST_LEADER_ELECTION_LEASE`, `POD_NAME` and `POD_NAMESPACE` are set (as
the chart sets them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kingest.operator.leader import LeaseElection


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kingest operator", description="Run Ingestions as Kubernetes Jobs."
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (default)"
    )
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable; default: $KINGEST_WATCH_NAMESPACES or all)",
    )
    parser.add_argument(
        "--runner-image",
        default=os.environ.get("KINGEST_RUNNER_IMAGE"),
        help="image of the runner Jobs when an Ingestion names none ($KINGEST_RUNNER_IMAGE)",
    )
    parser.add_argument(
        "--liveness",
        default=None,
        help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--readiness",
        default=None,
        help="serve a readiness endpoint, e.g. http://0.0.0.0:8081/readyz: 503 until the API "
        "server answers",
    )
    parser.add_argument(
        "--webhook-port",
        type=int,
        default=None,
        help="serve the validating admission webhook (HTTPS) on this port ($KINGEST_WEBHOOK_PORT)",
    )
    parser.add_argument(
        "--webhook-cert-dir",
        default=None,
        help="the webhook's tls.crt and tls.key ($KINGEST_WEBHOOK_CERT_DIR, default "
        "/etc/kingest/webhook)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port at /metrics ($KINGEST_METRICS_PORT)",
    )
    election = os.environ.get("KINGEST_LEADER_ELECTION_LEASE")
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=bool(election and os.environ.get("POD_NAME") and os.environ.get("POD_NAMESPACE")),
        help="act only while holding the Lease in $POD_NAMESPACE, as $POD_NAME (default: on "
        "when $KINGEST_LEADER_ELECTION_LEASE, $POD_NAME and $POD_NAMESPACE are set)",
    )
    parser.add_argument(
        "--lease",
        default=election or "kingest-operator",
        help="name of the Lease ($KINGEST_LEADER_ELECTION_LEASE)",
    )
    parser.add_argument(
        "--lease-duration",
        type=int,
        default=int(os.environ.get("KINGEST_LEADER_ELECTION_LEASE_DURATION", "15")),
        help="seconds a dead leader's Lease keeps standbys waiting "
        "($KINGEST_LEADER_ELECTION_LEASE_DURATION, default 15)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("KINGEST_LOG_FORMAT") or "text",
        help="one line per log record as text, or as a JSON object ($KINGEST_LOG_FORMAT)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the operator until SIGINT / SIGTERM; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    identity, lease_namespace = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
    if args.leader_election and not (identity and lease_namespace):
        parser.error("--leader-election needs $POD_NAME and $POD_NAMESPACE (the replica's Pod)")
    if args.lease_duration < 2:
        parser.error("--lease-duration must be at least 2 seconds")
    namespaces = args.namespace
    if not namespaces and not args.all_namespaces:
        watched = os.environ.get("KINGEST_WATCH_NAMESPACES", "")
        namespaces = [ns.strip() for ns in watched.split(",") if ns.strip()]

    # Imported here: `kingest ingest` never pays for kopf.
    import kopf

    from kingest.operator import health, logs
    from kingest.operator.config import OperatorConfig
    from kingest.operator.metrics import IngestionMetrics

    config = OperatorConfig(namespaces=namespaces)
    if args.runner_image:
        config.runner_image = args.runner_image
    if args.metrics_port is not None:
        config.metrics_port = args.metrics_port
    if args.webhook_port is not None:
        config.webhook_port = args.webhook_port
    if args.webhook_cert_dir:
        config.webhook_cert_dir = args.webhook_cert_dir
    from kingest.operator import handlers  # noqa: F401  (registers the kopf handlers)

    if config.webhook_port is not None:
        from kingest.operator import admission  # noqa: F401  (registers the kopf handler)
    logs.configure(args.verbose, args.log_format)
    metrics = IngestionMetrics()
    metrics.leading = not args.leader_election  # until the startup handler holds the Lease
    memo = kopf.Memo(config=config, metrics=metrics)
    if args.leader_election:
        # Awaited by the startup handler: kopf acts on nothing before this replica leads.
        memo.election = _election(args.lease, lease_namespace, identity, args.lease_duration)
    # Liveness, readiness and /metrics from the start, standing by included: every replica
    # behind the metrics Service is a healthy target, and `kingest_operator_leader` says
    # which one acts.
    probes = health.ProbeServer(metrics, args.liveness, args.readiness, config.metrics_port)

    async def operate() -> None:
        await probes.start()
        try:
            await health.wait_for_api(config.api_configuration(), probes)
            await kopf.operator(
                standalone=True,
                # kopf would name itself user@host, and the image's UID 65532 has no passwd
                # entry (getpass fails): the Pod's name, or the host's, names this replica.
                identity=identity or socket.gethostname(),
                clusterwide=not namespaces,
                namespaces=namespaces,
                # The operator's state is built from these once, by the startup handler.
                memo=memo,
            )
        finally:
            await probes.stop()

    # One event loop for everything: the probes, the wait for the API server, and kopf.
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(operate())
    return 0


def _election(name: str, namespace: str, identity: str, duration_s: int) -> LeaseElection:
    """This replica's part in the election on Lease `namespace/name`."""
    import kubernetes

    from kingest.operator.leader import LeaseElection

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return LeaseElection(kubernetes.client.ApiClient(), namespace, name, identity, duration_s)
