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
`/metrics` (Prometheus) is served on `--metrics-port` / `KINGEST_METRICS_PORT` when given.
Until the API server answers it logs why not every few seconds (`kingest.operator.health`)
and `--readiness` answers 503; then it starts. Test hook: `KINGEST_CLOCK_FILE` (see
`kingest.operator.clock`) replaces the system clock.
Several replicas elect a leader on a `coordination.k8s.io/v1` Lease (`kingest.operator.leader`):
only the holder runs kopf; a standby serves the liveness endpoint and /metrics (with
`kingest_operator_leader 0`) and takes over once the leader's Lease expires. Election is on
by default when `KINGEST_LEADER_ELECTION_LEASE`, `POD_NAME` and `POD_NAMESPACE` are set (as
the chart sets them).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import logging
import os
import socket
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kingest.operator.leader import LeaseElection
    from kingest.operator.metrics import IngestionMetrics
    from kingest.operator.scheduler import MetricsServer


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
    metrics_server = _serve_metrics(config.metrics_port, metrics)
    readiness = health.Readiness(args.readiness) if args.readiness else None
    with _standby_liveness(args.liveness):
        health.wait_for_api(config.api_configuration(), readiness)
    election = None
    if args.leader_election:
        # A standby answers scrapes too (`kingest_operator_leader 0`): every replica behind
        # the metrics Service is a healthy target, and the gauge shows which one acts.
        metrics.leading = False
        election = _lead(args.lease, lease_namespace, identity, args.lease_duration, args.liveness)
        metrics.leading = True
    try:
        kopf.run(
            standalone=True,
            # kopf would name itself user@host, and the image's UID 65532 has no passwd entry
            # (getpass fails): the Pod's name, or the host's, identifies this replica.
            identity=identity or socket.gethostname(),
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=args.liveness,
            # The operator's state is built from these once, by the startup handler.
            memo=kopf.Memo(config=config, metrics=metrics),
        )
    finally:
        if election is not None:
            election.release()
        if metrics_server is not None:
            metrics_server.stop()
        if readiness is not None:
            readiness.stop()
    return 0


def _serve_metrics(port: int | None, metrics: IngestionMetrics) -> MetricsServer | None:
    """Serve /metrics from start-up on (standing by included), if a port is configured."""
    if port is None:
        return None
    from kingest.operator.scheduler import MetricsServer

    server = MetricsServer(metrics, port)
    server.start()
    logging.getLogger(__name__).info("serving metrics on port %d", server.port)
    return server


def _lead(
    name: str, namespace: str, identity: str, duration_s: int, liveness: str | None
) -> LeaseElection:
    """Stand by (serving liveness) until this replica holds the Lease; then keep renewing it."""
    import kubernetes

    from kingest.operator.leader import LeaseElection

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    election = LeaseElection(kubernetes.client.ApiClient(), namespace, name, identity, duration_s)
    with _standby_liveness(liveness):
        election.wait_to_lead()
    election.keep_leading()
    return election


@contextlib.contextmanager
def _standby_liveness(url: str | None) -> Iterator[None]:
    """Answer the liveness probe while standing by; kopf serves it once this replica leads."""
    if url is None:
        yield
        return
    where = urllib.parse.urlsplit(url)

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path.split("?")[0] == (where.path or "/")
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(b"standby\n" if found else b"")

        def log_message(self, *_: object) -> None:
            pass  # a probe every few seconds is noise

    server = http.server.ThreadingHTTPServer((where.hostname or "", where.port or 80), Healthz)
    thread = threading.Thread(target=server.serve_forever, name="standby-liveness", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
