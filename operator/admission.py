"""The validating admission webhook: a spec that cannot run fails at `kubectl apply`.

kopf serves it (`@kopf.on.validate`, over TLS with the certificate the chart provides) with
the checks the reconcile applies (`validate.admission_problem`: the runner's URI and table
checks, no inline secrets, reserved names, the cron schedule and time zone), without I/O.
Only creates and updates are sent here, never deletes; an update that leaves the spec as it
was (an annotation, a label) is let through, so an object accepted before the webhook existed
can still be labelled, annotated and deleted. The status path (phase Invalid) stays for
clusters without the webhook, and for requests the API server let through because the
webhook did not answer (failurePolicy Ignore, see the chart's values).

Imported by `kingest operator` only when the webhook is configured: kopf registers the
handler at import.
"""

from __future__ import annotations

from typing import Any

import kopf

from kingest.operator.spec import GROUP, PLURAL, VERSION
from kingest.operator.validate import admission_problem

WEBHOOK_ID = "validate-ingestion"  # the URL path: https://<service>/validate-ingestion


@kopf.on.validate(GROUP, VERSION, PLURAL, id=WEBHOOK_ID, operations=["CREATE", "UPDATE"])
def reject_unrunnable_spec(
    spec: kopf.Spec, old: kopf.Body | None, operation: str | None, **_: Any
) -> None:
    """Reject a created or changed spec that cannot run, with the status's message."""
    new = dict(spec)
    if operation == "UPDATE" and old is not None and dict(old.get("spec") or {}) == new:
        return
    problem = admission_problem(new)
    if problem is not None:
        raise kopf.AdmissionError(problem, code=422)


def configure(settings: kopf.OperatorSettings, port: int, cert_dir: str) -> None:
    """Serve the webhook on `port` with `cert_dir`/tls.crt and tls.key (kopf re-reads them
    when they change, e.g. cert-manager's renewal). The chart owns the
    ValidatingWebhookConfiguration, so kopf manages none."""
    settings.admission.server = kopf.WebhookServer(
        addr="0.0.0.0",
        port=port,
        certfile=f"{cert_dir}/tls.crt",
        pkeyfile=f"{cert_dir}/tls.key",
    )
    settings.admission.managed = None
