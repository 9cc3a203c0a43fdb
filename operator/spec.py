"""The `Ingestion` custom resource as pydantic models: the operator's public API.

These models are the one source of truth: `kingest.operator.crd` generates the CRD's OpenAPI
schema from them (descriptions, defaults, enums), and the operator parses every object it
reads through them, so the rest of the code never handles raw dicts.

Field names are Kubernetes-style camelCase on the wire and snake_case in Python. Kubernetes
objects that the operator only passes through to the Pod (resources, volumes, affinity, ...)
are kept as plain dicts and marked `x-kubernetes-preserve-unknown-fields` in the CRD: the API
server validates them again when the Job is created, against the cluster's own version.

Schedule fields (`schedule`, `timeZone`, `suspend`, `concurrencyPolicy`, ...) are optional:
without `schedule` an Ingestion runs once per spec generation, as before they existed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "kingest.io"
VERSION = "v1alpha1"
KIND = "Ingestion"
PLURAL = "ingestions"
SINGULAR = "ingestion"
SHORT_NAMES = ["ingest"]
API_VERSION = f"{GROUP}/{VERSION}"

IncrementalStrategy = Literal["replace", "append", "merge", "delete+insert", "scd2", "none"]
SchemaContract = Literal["evolve", "freeze", "discard_row", "discard_value"]
SchemaNaming = Literal["snake_case", "direct"]
LoaderFileFormat = Literal["jsonl", "parquet", "csv", "insert_values"]
PullPolicy = Literal["Always", "IfNotPresent", "Never"]
Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Invalid", "Scheduled", "Suspended"]
RunResult = Literal["Pending", "Running", "Succeeded", "Failed"]
Trigger = Literal["Generation", "Requested", "Schedule"]
ConditionStatus = Literal["True", "False", "Unknown"]
ConcurrencyPolicy = Literal["Forbid", "Allow", "Replace"]

_PASS_THROUGH = {"x-kubernetes-preserve-unknown-fields": True}
_PASS_THROUGH_LIST = {"items": {"type": "object", **_PASS_THROUGH}}


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are an error."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    def wire(self) -> dict[str, Any]:
        """This object as the API server stores it (camelCase, unset and empty strings left out).

        Empty strings are left out because they mean the same as absent here, and some API
        servers (seen on 1.20) reject "" in a CRD's string field as null.
        """
        return _without_empty_strings(
            self.model_dump(by_alias=True, exclude_none=True, mode="json")
        )


def _without_empty_strings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_empty_strings(v) for k, v in value.items() if v != ""}
    if isinstance(value, list):
        return [_without_empty_strings(item) for item in value]
    return value


class LocalObjectReference(Model):
    """A reference to an object in the Ingestion's namespace."""

    name: str = Field(min_length=1, description="Name of the object, in the same namespace.")


class SecretKeySelector(Model):
    """One key of a Secret in the Ingestion's namespace."""

    name: str = Field(min_length=1, description="Name of the Secret, in the same namespace.")
    key: str = Field(min_length=1, description="Key in the Secret's data.")


class UriSource(Model):
    """Where to read a whole URI from, when it cannot be written into the spec."""

    secret_key_ref: SecretKeySelector = Field(
        description="A Secret key holding the complete ingestr URI, credentials included. "
        "The operator never reads it: the runner receives it as an environment variable."
    )


class CredentialItem(Model):
    """One URI query parameter whose value comes from a Secret key."""

    parameter: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="The URI query parameter the value is merged into, e.g. access_key_id, "
        "secret_access_key, session_token.",
    )
    key: str | None = Field(
        default=None,
        min_length=1,
        description="Key in the Secret holding the value. Defaults to the parameter's name.",
    )
    optional: bool = Field(
        default=False,
        description="Run without this parameter when the Secret lacks the key. "
        "A missing required key keeps the run Pending with CreateContainerConfigError.",
    )

    @property
    def secret_key(self) -> str:
        return self.key or self.parameter


class Credentials(Model):
    """URI parameters taken from a Secret and merged into one side's URI by the runner."""

    secret_ref: LocalObjectReference = Field(
        description="The Secret holding the credentials, in the Ingestion's namespace."
    )
    items: list[CredentialItem] | None = Field(
        default=None,
        description="Which URI parameters come from which Secret keys. Defaults, for s3 "
        "URIs: access_key_id and secret_access_key (required) and session_token (optional), "
        "each from the key of the same name.",
    )


class Endpoint(Model):
    """One side of an ingestion: an ingestr URI and a table."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["uri"]}, {"required": ["uriFrom"]}]}
    )

    uri: str | None = Field(
        default=None,
        min_length=1,
        description="The ingestr URI without secrets, e.g. 's3://?endpoint_url=https://minio:9000' "
        "or 'duckdb:////data/warehouse.duckdb'. Credentials belong in `credentials`; a secret "
        "written here makes the Ingestion Invalid. Exactly one of uri and uriFrom.",
    )
    uri_from: UriSource | None = Field(
        default=None,
        description="Take the whole URI from a Secret key instead. Exactly one of uri and uriFrom.",
    )
    table: str = Field(
        min_length=1,
        description="The table, in the form the URI's scheme needs: for an S3 source "
        "'<bucket>/<file glob>', for an S3 destination '<bucket>/<prefix>', for DuckDB "
        "'<schema>.<table>' or '<table>'.",
    )
    credentials: Credentials | None = Field(
        default=None,
        description="A Secret whose keys become URI query parameters of this side only "
        "(so the source and the destination can use different accounts).",
    )

    @model_validator(mode="after")
    def _one_uri(self) -> Endpoint:
        if (self.uri is None) == (self.uri_from is None):
            raise ValueError("give exactly one of uri and uriFrom")
        return self


class RunnerSpec(Model):
    """How the runner Pod of each run is built."""

    image: str | None = Field(
        default=None,
        min_length=1,
        description="The kingest runner image. Defaults to the operator's configured image.",
    )
    image_pull_policy: PullPolicy | None = Field(
        default=None, description="Image pull policy of the runner container."
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, description="Secrets for pulling the runner image."
    )
    service_account_name: str | None = Field(
        default=None,
        description="ServiceAccount of the runner Pod, e.g. one bound to a cloud role (IRSA, "
        "workload identity). Its token is mounted only when this is set.",
    )
    resources: dict[str, Any] | None = Field(
        default=None,
        description="Compute resources (requests, limits) of the runner container.",
        json_schema_extra=_PASS_THROUGH,
    )
    env: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Extra environment variables of the runner container (core/v1 EnvVar). "
        "Names starting with KINGEST_ are reserved.",
        json_schema_extra=_PASS_THROUGH_LIST,
    )
    env_from: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Extra environment sources of the runner container (core/v1 EnvFromSource).",
        json_schema_extra=_PASS_THROUGH_LIST,
    )
    volumes: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Volumes of the runner Pod (core/v1 Volume), e.g. a PersistentVolumeClaim "
        "holding the DuckDB file. The name 'tmp' is reserved.",
        json_schema_extra=_PASS_THROUGH_LIST,
    )
    volume_mounts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Mounts of those volumes in the runner container (core/v1 VolumeMount).",
        json_schema_extra=_PASS_THROUGH_LIST,
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node selector of the runner Pod."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Tolerations of the runner Pod (core/v1 Toleration).",
        json_schema_extra=_PASS_THROUGH_LIST,
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="Affinity of the runner Pod (core/v1 Affinity).",
        json_schema_extra=_PASS_THROUGH,
    )
    pod_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels of the runner Pod. Labels under kingest.io/ are reserved.",
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations of the runner Pod."
    )
    backoff_limit: int = Field(
        default=0,
        ge=0,
        description="Pod retries within one run's Job, whatever the failure (the Job's "
        "backoffLimit). The default 0 reports a failure at once; most failures (no matching "
        "files, bad data) do not go away by retrying. Transient failures are retried by "
        "spec.retry instead, as new attempts.",
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Fail a run that takes longer than this (reason DeadlineExceeded).",
    )
    progress: Literal["log", "json", "none"] = Field(
        default="log",
        description="Progress in the runner's log (kubectl logs), as `kingest ingest "
        "--progress`: log (a line every 10 s of a run), json (one JSON object per event, for "
        "log collectors: start, progress every second, end) or none.",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        description="Delete a finished run's Job after this many seconds. The Ingestion's status "
        "keeps its outcome.",
    )


class RetrySpec(Model):
    """Retries of runs that failed for a reason the runner reports as transient."""

    limit: int = Field(
        default=3,
        ge=0,
        description="New attempts of a run that failed with a transient reason (the runner's "
        "SourceUnavailable, exit code 8: unreachable endpoint, throttling, 5xx after the "
        "client's own retries). Data and usage errors are never retried. 0: no retries.",
    )
    backoff_seconds: int = Field(
        default=10,
        ge=1,
        description="Wait before the first retry; it doubles with each further attempt.",
    )
    max_backoff_seconds: int = Field(
        default=300, ge=1, description="The longest wait between two attempts."
    )

    def delay_s(self, failed_attempt: int) -> int:
        """Seconds between the end of attempt `failed_attempt` and the next one."""
        return min(self.backoff_seconds * 2 ** (failed_attempt - 1), self.max_backoff_seconds)


class IngestionSpec(Model):
    """What to ingest, from where to where, how, and with which runner Pod."""

    source: Endpoint = Field(description="Where the data comes from (ingestr --source-uri/table).")
    destination: Endpoint = Field(
        description="Where the data goes (ingestr --dest-uri/--dest-table)."
    )
    incremental_strategy: IncrementalStrategy = Field(
        default="replace",
        description="How a run changes the destination table (ingestr --incremental-strategy): "
        "replace, append, merge (upsert on primaryKey), delete+insert, scd2 (row versions "
        "with _dlt_valid_from/_dlt_valid_to, needs primaryKey and a DuckDB destination) or none "
        "(append).",
    )
    primary_key: list[str] = Field(
        default_factory=list,
        description="Primary key columns, for the merge, delete+insert and scd2 strategies.",
    )
    incremental_key: str | None = Field(
        default=None,
        description="The column that orders increments (ingestr --incremental-key). With a "
        "DuckDB table or query: source, its last value is kept in the destination (as dlt keeps "
        "it) and each run loads only the rows after it; status.cursor shows it.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Column name -> type hint, e.g. {id: bigint} (ingestr --columns).",
    )
    interval_start: str | None = Field(
        default=None,
        description="Lower bound of the incremental key, included (ingestr --interval-start).",
    )
    interval_end: str | None = Field(
        default=None,
        description="Upper bound of the incremental key, included (ingestr --interval-end).",
    )
    full_refresh: bool = Field(
        default=False,
        description="Drop the destination's state and reload (ingestr --full-refresh).",
    )
    loader_file_format: LoaderFileFormat | None = Field(
        default=None, description="Intermediate / S3 file format (ingestr --loader-file-format)."
    )
    loader_file_size: int | None = Field(
        default=None, ge=1, description="Rows per written file (ingestr --loader-file-size)."
    )
    page_size: int | None = Field(
        default=None, ge=1, description="Rows per batch read (ingestr --page-size)."
    )
    extract_parallelism: int | None = Field(
        default=None, ge=1, description="Parallel reads (ingestr --extract-parallelism)."
    )
    yield_limit: int | None = Field(
        default=None,
        ge=1,
        description="Load at most this many pages of pageSize rows (ingestr --yield-limit).",
    )
    sql_limit: int | None = Field(
        default=None,
        ge=1,
        description="Read at most this many rows from a DuckDB table or query: source, in "
        "incrementalKey order when given (ingestr --sql-limit).",
    )
    sql_exclude_columns: list[str] = Field(
        default_factory=list,
        description="Columns of a DuckDB table or query: source left out (ingestr "
        "--sql-exclude-columns).",
    )
    mask: list[str] = Field(
        default_factory=list,
        description="Columns masked before anything is written, each 'column:algorithm[:param]' "
        "(ingestr --mask), e.g. 'email:hash' or 'salary:round:1000'. Algorithms: hash, sha256, "
        "md5, email, phone, credit_card, ssn, redact, stars, fixed[:VALUE], random, "
        "partial[:N], first_letter, uuid, sequential, round[:STEP], range[:WIDTH], "
        "noise[:LEVEL], date_shift[:DAYS], year_only, month_year. hmac's key is a secret: "
        "give hmac masks through runner.env INGESTR_MASK from a Secret, not here.",
    )
    schema_contract: SchemaContract | None = Field(
        default=None,
        description="When the source has a column or type the destination table lacks "
        "(ingestr --schema-contract): evolve (the default: add it), freeze (fail, nothing "
        "written), discard_row (leave out rows with a value in it), discard_value (leave the "
        "column out).",
    )
    schema_naming: SchemaNaming | None = Field(
        default=None,
        description="Column names in the destination (ingestr --schema-naming): snake_case (the "
        "default, as dlt: 'First Name' -> first_name) or direct (as the source writes them).",
    )
    runner: RunnerSpec = Field(
        default_factory=RunnerSpec, description="How each run's Pod is built."
    )
    retry: RetrySpec = Field(
        default_factory=RetrySpec,
        description="Retries of transient failures, each a new Job (an attempt) listed in "
        "status.runs.",
    )
    schedule: str | None = Field(
        default=None,
        min_length=1,
        description="Run on this cron schedule: 5 fields (minute hour day-of-month month "
        "day-of-week, names like MON/JAN allowed) or a macro (@hourly, @daily, @weekly, "
        "@monthly, @yearly). Without it the Ingestion runs once per spec change.",
    )
    time_zone: str = Field(
        default="UTC",
        min_length=1,
        description="IANA time zone the schedule's wall-clock times are in, e.g. "
        "Europe/Berlin. Around daylight-saving changes a fixed-hour schedule fires once per "
        "wall-clock time (Vixie cron's rule).",
    )
    suspend: bool = Field(
        default=False,
        description="Fire no scheduled runs (a running one finishes). On resume the latest "
        "missed slot runs if it is within startingDeadlineSeconds; older ones are skipped.",
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        default="Forbid",
        description="What a slot does while a run is active: Forbid skips it (counted in "
        "status.skippedSlots), Allow runs alongside, Replace deletes the active run's Job "
        "and starts the new run once it is gone.",
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=0,
        description="A slot that cannot start within this many seconds of its time (operator "
        "down, suspended) is skipped. Unset: the latest missed slot always runs, once.",
    )
    run_on_create: bool = Field(
        default=False,
        description="With a schedule: also run once right away when the Ingestion is created.",
    )
    successful_runs_history_limit: int | None = Field(
        default=None,
        ge=0,
        description="Succeeded runs' Jobs to keep; older ones are deleted. Default: 3 for "
        "scheduled Ingestions, all otherwise.",
    )
    failed_runs_history_limit: int | None = Field(
        default=None,
        ge=0,
        description="Failed runs' Jobs to keep; older ones are deleted. Default: 1 for "
        "scheduled Ingestions, all otherwise.",
    )


class Condition(Model):
    """A Kubernetes-convention condition."""

    type: str = Field(
        description="Ready, Running, Succeeded, or for scheduled Ingestions Suspended, "
        "InvalidSchedule and ConcurrencyForbidden."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="A CamelCase word a user can search for.")
    message: str = Field(default="", description="What happened, for a human.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, description="The spec generation this condition describes."
    )


class CursorStatus(Model):
    """The incremental cursor of a run: the last incrementalKey value loaded, kept in the
    destination so the next run starts after it."""

    key: str = Field(description="The incremental key column, as the source names it.")
    value: str | None = Field(
        default=None, description="Its last value after the run (text), None before any row."
    )
    previous: str | None = Field(
        default=None, description="Its value before the run; None for the first run."
    )
    stored: bool | None = Field(
        default=None,
        description="Whether the run stored it (false for a backfill with intervalStart/End).",
    )
    rows_skipped: int | None = Field(
        default=None,
        description="Rows at the previous value that an earlier run had loaded and this one "
        "skipped.",
    )


class RunStatus(Model):
    """One run (one Job) and its outcome."""

    job: str = Field(description="Name of the run's Job.")
    trigger: Trigger = Field(
        description="Why it ran: Generation (a new spec), Requested (the "
        "kingest.io/run-requested annotation) or Schedule."
    )
    generation: int | None = Field(default=None, description="The spec generation it ran.")
    attempt: int | None = Field(
        default=None, description="2, 3, ...: a retry of a transient failure (spec.retry)."
    )
    result: RunResult = Field(description="Pending, Running, Succeeded or Failed.")
    reason: str | None = Field(
        default=None, description="Why it is in that state, e.g. NoFilesMatched, ImagePullBackOff."
    )
    message: str | None = Field(default=None, description="The runner's or Kubernetes' message.")
    start_time: str | None = Field(default=None, description="When the Job started (RFC 3339).")
    completion_time: str | None = Field(
        default=None, description="When the run finished (RFC 3339)."
    )
    load_id: str | None = Field(default=None, description="The load id the runner wrote.")
    rows: int | None = Field(default=None, description="Rows loaded.")
    files: int | None = Field(default=None, description="Files read or written.")
    files_skipped: int | None = Field(
        default=None,
        description="Matched source files not read because the destination table already "
        "holds them (incremental file syncs).",
    )
    bytes: int | None = Field(default=None, description="Bytes read or written.")
    duration_s: float | None = Field(default=None, description="The runner's own duration.")
    cursor: CursorStatus | None = Field(
        default=None, description="The incremental cursor the run followed, if any."
    )


class IngestionStatus(Model):
    """Observed state, derived from the runs' Jobs and Pods."""

    phase: Phase | None = Field(default=None, description="Summary of the Ingestion's state.")
    reason: str | None = Field(default=None, description="Why it is in that phase.")
    message: str | None = Field(default=None, description="What to know or fix, for a human.")
    observed_generation: int | None = Field(
        default=None, description="The latest spec generation the operator acted on."
    )
    handled_run_request: str | None = Field(
        default=None,
        description="The kingest.io/run-requested annotation value that was last acted on.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Running and Succeeded conditions."
    )
    last_run: RunStatus | None = Field(default=None, description="The latest run.")
    last_load_id: str | None = Field(
        default=None, description="Load id of the latest successful run."
    )
    cursor: CursorStatus | None = Field(
        default=None,
        description="The incremental cursor the latest run that stored one left in the "
        "destination: the next run loads rows after cursor.value.",
    )
    last_successful_time: str | None = Field(
        default=None, description="When the latest successful run finished."
    )
    next_run_time: str | None = Field(
        default=None,
        description="When the next scheduled slot is due (scheduled Ingestions, not suspended); "
        "recomputed on every spec change.",
    )
    next_retry_time: str | None = Field(
        default=None,
        description="When the next attempt of a run that failed transiently starts (spec.retry).",
    )
    last_schedule_time: str | None = Field(
        default=None, description="The slot of the latest scheduled run (RFC 3339)."
    )
    scheduled_from: str | None = Field(
        default=None,
        description="Slots after this time are due: the latest slot run or skipped, or when "
        "the schedule was last edited (an edit moves the next slot, it never fires old ones).",
    )
    skipped_slots: int | None = Field(
        default=None,
        description="Slots that did not run: a run was active (Forbid), or past "
        "startingDeadlineSeconds, or older than the one catch-up run after downtime.",
    )
    last_skipped_time: str | None = Field(
        default=None, description="The latest skipped slot (RFC 3339)."
    )
    runs: list[RunStatus] = Field(
        default_factory=list, description="Recent runs, newest first (bounded)."
    )


class IngestionMeta(Model):
    """The metadata fields the operator uses."""

    model_config = ConfigDict(extra="ignore")

    name: str
    namespace: str
    uid: str
    generation: int = 1
    creation_timestamp: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    deletion_timestamp: str | None = None
