"""Render one run of an Ingestion as a `batch/v1` Job manifest (pure).

The Job's name is a function of the Ingestion's uid and what triggered the run, so an
operator that restarts between creating a Job and recording it finds the same name again
(409 AlreadyExists) and adopts the Job instead of starting a second run.

Credentials reach the runner only through `env[].valueFrom.secretKeyRef`: the Job spec holds
Secret names and keys, never values, and the kubelet resolves them when the Pod starts.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from kingest.operator.spec import (
    API_VERSION,
    KIND,
    CredentialItem,
    Endpoint,
    IngestionMeta,
    IngestionSpec,
    Trigger,
)

CONTAINER = "runner"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TMP_VOLUME = "tmp"
RUN_AS = 65532  # the conventional "nonroot" user of distroless-style images
MAX_NAME = 63  # Job names become the value of the Pods' `job-name` label

LABEL_INGESTION = "kingest.io/ingestion"
LABEL_INGESTION_UID = "kingest.io/ingestion-uid"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
ANNOTATION_TRIGGER = "kingest.io/trigger"
ANNOTATION_GENERATION = "kingest.io/generation"
ANNOTATION_RUN_REQUEST = "kingest.io/run-request"
ANNOTATION_CREATED_AT = "kingest.io/created-at"
ANNOTATION_SCHEDULED_AT = "kingest.io/scheduled-at"  # the slot of a scheduled run (RFC 3339)
ANNOTATION_ATTEMPT = "kingest.io/attempt"  # 2, 3, ...: a retry of a transient failure
ANNOTATION_INGESTION = "kingest.io/ingestion"  # the full name; label values stop at 63
RESERVED_ENV_PREFIXES = ("KINGEST_",)
RESERVED_ENV = {"SOURCE_URI", "DESTINATION_URI", "HOME"}

# Secret-held URI parameters of each scheme when `credentials.items` is not given.
DEFAULT_CREDENTIAL_ITEMS: dict[str, list[CredentialItem]] = {
    "s3": [
        CredentialItem(parameter="access_key_id"),
        CredentialItem(parameter="secret_access_key"),
        CredentialItem(parameter="session_token", optional=True),
    ],
}


@dataclass(frozen=True)
class RunnerDefaults:
    """What the operator's installation sets for every runner Pod (the Helm chart's values)."""

    image: str
    resources: dict[str, Any] | None = None
    # Extra container securityContext fields; the restricted ones below always win.
    security_context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """What a run is for: a spec generation, a value of the run-requested annotation, or a
    schedule slot (`slot`, a UTC datetime on a whole minute); `attempt` 2 and up retry it
    after a transient failure."""

    trigger: Trigger
    generation: int
    run_request: str | None = None
    slot: datetime | None = None
    attempt: int = 1

    @property
    def key(self) -> str:
        """Identifies the run among all runs of one Ingestion."""
        if self.trigger == "Requested":
            key = f"requested/{self.run_request}"
        elif self.trigger == "Schedule":
            key = f"schedule/{slot_minutes(self.slot)}"
        else:
            key = f"generation/{self.generation}"
        # The first attempt keeps the name it had before retries existed (adoption).
        return key if self.attempt == 1 else f"{key}/attempt/{self.attempt}"

    def retried(self) -> Run:
        """The next attempt of this run."""
        return replace(self, attempt=self.attempt + 1)


def run_of(job: dict[str, Any]) -> Run:
    """The run a Job was created for, read back from the annotations `render_job` wrote."""
    annotations = job["metadata"].get("annotations") or {}
    generation = annotations.get(ANNOTATION_GENERATION, "")
    attempt = annotations.get(ANNOTATION_ATTEMPT, "")
    slot = annotations.get(ANNOTATION_SCHEDULED_AT)
    trigger = annotations.get(ANNOTATION_TRIGGER, "Generation")
    return Run(
        trigger=trigger if trigger in ("Generation", "Requested", "Schedule") else "Generation",
        generation=int(generation) if generation.isdigit() else 1,
        run_request=annotations.get(ANNOTATION_RUN_REQUEST),
        slot=parse_time(slot) if slot else None,
        attempt=int(attempt) if attempt.isdigit() else 1,
    )


def slot_minutes(slot: datetime | None) -> int:
    """A schedule slot as whole minutes since the Unix epoch (slots fall on whole minutes)."""
    if slot is None:
        raise ValueError("a scheduled run needs its slot")
    return int(slot.timestamp()) // 60


@functools.lru_cache(maxsize=8192)  # pure, and asked 4-5 times by each reconcile that starts a run
def job_name(name: str, uid: str, run: Run) -> str:
    """The run's deterministic Job name, at most 63 characters.

    A readable prefix and a hash of the Ingestion's uid and the run's key; a scheduled run
    ends in its slot's Unix minute instead (`<name>-<uid hash>-<minute>`, a retry adds
    `-<attempt>`), so every replica and every restart names a slot's run the same, and the
    name says when it was due. The uid hash keeps a re-created Ingestion of the same name
    from adopting its predecessor's Job.
    """
    if run.trigger == "Schedule":
        uid_hash = hashlib.sha256(uid.encode()).hexdigest()[:5]
        digest = f"{uid_hash}-{slot_minutes(run.slot)}"
        if run.attempt > 1:
            digest += f"-{run.attempt}"
    else:
        digest = hashlib.sha256(f"{uid}/{run.key}".encode()).hexdigest()[:10]
    prefix = re.sub(r"[^a-z0-9-]", "-", name.lower())[: MAX_NAME - len(digest) - 1].strip("-")
    return f"{prefix}-{digest}" if prefix else f"run-{digest}"


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Kubernetes writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as Kubernetes writes it (Z or an offset) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0].lower() if ":" in uri else ""


def credential_items(endpoint: Endpoint) -> list[CredentialItem]:
    """The URI parameters this side takes from its credentials Secret."""
    if endpoint.credentials is None:
        return []
    if endpoint.credentials.items is not None:
        return endpoint.credentials.items
    return DEFAULT_CREDENTIAL_ITEMS.get(_scheme(endpoint.uri or ""), [])


def _secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _endpoint_env(side: str, endpoint: Endpoint) -> list[dict[str, Any]]:
    env = []
    if endpoint.uri_from is not None:
        ref = endpoint.uri_from.secret_key_ref
        env.append(_secret_env(f"{side}_URI", ref.name, ref.key))
    if endpoint.credentials is not None:
        secret = endpoint.credentials.secret_ref.name
        for item in credential_items(endpoint):
            env.append(
                _secret_env(
                    f"KINGEST_{side}_{item.parameter.upper()}",
                    secret,
                    item.secret_key,
                    item.optional,
                )
            )
    return env


def runner_args(spec: IngestionSpec) -> list[str]:
    """`kingest ingest` arguments for the spec; URIs from Secrets come through the env."""
    args = ["ingest", "--yes", "--progress", spec.runner.progress]
    if spec.source.uri is not None:
        args += ["--source-uri", spec.source.uri]
    args += ["--source-table", spec.source.table]
    if spec.destination.uri is not None:
        args += ["--dest-uri", spec.destination.uri]
    args += ["--dest-table", spec.destination.table]
    args += ["--incremental-strategy", spec.incremental_strategy]
    for column in spec.primary_key:
        args += ["--primary-key", column]
    optional = {
        "--incremental-key": spec.incremental_key,
        "--interval-start": spec.interval_start,
        "--interval-end": spec.interval_end,
        "--loader-file-format": spec.loader_file_format,
        "--loader-file-size": spec.loader_file_size,
        "--page-size": spec.page_size,
        "--extract-parallelism": spec.extract_parallelism,
        "--yield-limit": spec.yield_limit,
        "--sql-limit": spec.sql_limit,
        "--schema-contract": spec.schema_contract,
        "--schema-naming": spec.schema_naming,
    }
    for flag, value in optional.items():
        if value is not None:
            args += [flag, str(value)]
    if spec.columns:
        args += ["--columns", ",".join(f"{k}:{v}" for k, v in spec.columns.items())]
    for column in spec.sql_exclude_columns:
        args += ["--sql-exclude-columns", column]
    for mask in spec.mask:
        args += ["--mask", mask]
    if spec.full_refresh:
        args.append("--full-refresh")
    return args


def owner_reference(meta: IngestionMeta) -> dict[str, Any]:
    """Makes the garbage collector delete a Job (and its Pods) with its Ingestion."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta.name,
        "uid": meta.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def selector_labels(meta: IngestionMeta) -> dict[str, str]:
    """Labels on every Job and Pod of the Ingestion; the uid one is what the operator selects."""
    return {
        LABEL_INGESTION: meta.name[:63].rstrip("-_."),
        LABEL_INGESTION_UID: meta.uid,
        LABEL_MANAGED_BY: "kingest",
    }


def render_job(
    meta: IngestionMeta,
    spec: IngestionSpec,
    run: Run,
    defaults: RunnerDefaults,
    created_at: str,
) -> dict[str, Any]:
    """The Job manifest of `run`, owned by the Ingestion, with a restricted Pod.

    `created_at` (RFC 3339 with microseconds) orders runs created within the same second,
    which `creationTimestamp` cannot.
    """
    runner = spec.runner
    labels = selector_labels(meta)
    env: list[dict[str, Any]] = [
        {"name": "KINGEST_RESULT_FILE", "value": TERMINATION_MESSAGE_PATH},
        # The root filesystem is read-only; DuckDB and boto3 write under $HOME.
        {"name": "HOME", "value": "/tmp"},
        *_endpoint_env("SOURCE", spec.source),
        *_endpoint_env("DESTINATION", spec.destination),
        *runner.env,
    ]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": runner.image or defaults.image,
        "command": ["kingest"],
        "args": runner_args(spec),
        "env": env,
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}, *runner.volume_mounts],
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            **defaults.security_context,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if runner.image_pull_policy:
        container["imagePullPolicy"] = runner.image_pull_policy
    if runner.env_from:
        container["envFrom"] = runner.env_from
    resources = runner.resources if runner.resources is not None else defaults.resources
    if resources:
        container["resources"] = resources

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # IRSA / workload identity need the projected token; nothing else does.
        "automountServiceAccountToken": runner.service_account_name is not None,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}, *runner.volumes],
    }
    optional_pod_fields = {
        "serviceAccountName": runner.service_account_name,
        "imagePullSecrets": [ref.wire() for ref in runner.image_pull_secrets],
        "nodeSelector": runner.node_selector,
        "tolerations": runner.tolerations,
        "affinity": runner.affinity,
    }
    pod_spec.update({k: v for k, v in optional_pod_fields.items() if v})

    annotations = {
        ANNOTATION_INGESTION: meta.name,
        ANNOTATION_TRIGGER: run.trigger,
        ANNOTATION_GENERATION: str(run.generation),
    }
    if run.run_request is not None:
        annotations[ANNOTATION_RUN_REQUEST] = run.run_request
    if run.slot is not None:
        annotations[ANNOTATION_SCHEDULED_AT] = format_time(run.slot)
    if run.attempt > 1:
        annotations[ANNOTATION_ATTEMPT] = str(run.attempt)
    job_spec: dict[str, Any] = {
        "backoffLimit": runner.backoff_limit,
        "template": {
            "metadata": {
                "labels": {**runner.pod_labels, **labels},
                "annotations": {**runner.pod_annotations, **annotations},
            },
            "spec": pod_spec,
        },
    }
    if runner.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = runner.active_deadline_seconds
    if runner.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = runner.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(meta.name, meta.uid, run),
            "namespace": meta.namespace,
            "labels": labels,
            "annotations": {**annotations, ANNOTATION_CREATED_AT: created_at},
            "ownerReferences": [owner_reference(meta)],
        },
        "spec": job_spec,
    }
