"""`kingest operator`: run the kopf operator that turns Ingestions into Jobs.

    kingest operator [--all-namespaces | --namespace NS ...] [--runner-image IMAGE]
                     [--liveness URL] [--metrics-port PORT] [--verbose]

Watches every namespace unless namespaces are given (flags, or the comma-separated
`KINGEST_WATCH_NAMESPACES`). The runner image defaults to `KINGEST_RUNNER_IMAGE`. It talks to
the cluster with its in-cluster ServiceAccount, or the kubeconfig named by `KUBECONFIG`.
`/metrics` (Prometheus) is served on `--metrics-port` / `KINGEST_METRICS_PORT` when given.
Test hook: `KINGEST_CLOCK_FILE` (see `kingest.operator.clock`) replaces the system clock.
One replica at a time (kopf's standalone mode): there is no peering between operators.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence


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
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port at /metrics ($KINGEST_METRICS_PORT)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the operator until SIGINT / SIGTERM; returns the process exit code."""
    args = _parser().parse_args(argv)
    namespaces = args.namespace
    if not namespaces and not args.all_namespaces:
        watched = os.environ.get("KINGEST_WATCH_NAMESPACES", "")
        namespaces = [ns.strip() for ns in watched.split(",") if ns.strip()]

    # Imported here: `kingest ingest` never pays for kopf.
    import kopf

    from kingest.operator import handlers

    if args.runner_image:
        handlers.operator_settings.runner_image = args.runner_image
    if args.metrics_port is not None:
        handlers.operator_settings.metrics_port = args.metrics_port
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kopf logs every watch-stream handler call at INFO: noise with hundreds of Ingestions.
        logging.getLogger("kopf").setLevel(logging.WARNING)
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness,
    )
    return 0
