"""render_job: the run's Job manifest, restricted and free of secret values."""

from __future__ import annotations

import json
from typing import Any

from kingest.operator.job import (
    TERMINATION_MESSAGE_PATH,
    Run,
    RunnerDefaults,
    job_name,
    render_job,
)
from kingest.operator.spec import IngestionMeta, IngestionSpec
from kingest.runner.cli import load_options
from kingest.runner.interfaces import LoadOptions, Strategy
from kingest.runner.naming import Naming
from kingest.runner.schema_contract import Contract

DEFAULTS = RunnerDefaults(image="ghcr.io/kingest/kingest:1")
META = IngestionMeta(name="students", namespace="data", uid="1234-abcd", generation=3)
SPEC = IngestionSpec.model_validate(
    {
        "source": {
            "uri": "s3://?endpoint_url=http://minio:9000",
            "table": "my_bucket/students/*.csv",
            "credentials": {"secretRef": {"name": "src-keys"}},
        },
        "destination": {
            "uriFrom": {"secretKeyRef": {"name": "dest-uri", "key": "uri"}},
            "table": "processed.students",
        },
        "primaryKey": ["id", "term"],
        "incrementalStrategy": "merge",
    }
)


def _render(spec: IngestionSpec = SPEC, run: Run | None = None) -> dict[str, Any]:
    run = run or Run("Generation", META.generation)
    return render_job(META, spec, run, DEFAULTS, "2026-01-01T00:00:00.000001Z")


def _container(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_job_name_is_deterministic_per_run_and_distinct_between_runs() -> None:
    first = job_name("students", "uid-1", Run("Generation", 1))
    assert first == job_name("students", "uid-1", Run("Generation", 1))
    assert first != job_name("students", "uid-1", Run("Generation", 2))
    assert first != job_name("students", "uid-2", Run("Generation", 1))
    assert first != job_name("students", "uid-1", Run("Requested", 1, "now"))
    assert job_name("students", "uid-1", Run("Requested", 1, "a")) != job_name(
        "students", "uid-1", Run("Requested", 1, "b")
    )


def test_job_name_fits_a_label_value_for_the_longest_ingestion_names() -> None:
    name = job_name("a." * 120 + "x", "uid", Run("Generation", 7))
    assert len(name) <= 63
    assert name[0].isalnum() and name[-1].isalnum()
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_job_is_owned_by_the_ingestion_for_garbage_collection() -> None:
    owner = _render()["metadata"]["ownerReferences"][0]
    assert owner == {
        "apiVersion": "kingest.io/v1alpha1",
        "kind": "Ingestion",
        "name": "students",
        "uid": "1234-abcd",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_pod_is_restricted() -> None:
    pod = _render()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert pod["restartPolicy"] == "Never"


def test_service_account_token_is_mounted_only_for_a_named_service_account() -> None:
    assert _render()["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    irsa = SPEC.model_copy(
        update={"runner": SPEC.runner.model_copy(update={"service_account_name": "loader"})}
    )
    pod = _render(irsa)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == "loader"


def test_credentials_come_only_through_secret_key_refs() -> None:
    env = {var["name"]: var for var in _container(_render())["env"]}
    assert env["KINGEST_SOURCE_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "src-keys",
        "key": "access_key_id",
    }
    assert env["KINGEST_SOURCE_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "src-keys",
        "key": "secret_access_key",
    }
    assert env["KINGEST_SOURCE_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert env["DESTINATION_URI"]["valueFrom"]["secretKeyRef"] == {"name": "dest-uri", "key": "uri"}
    assert "--dest-uri" not in _container(_render())["args"]


def test_credential_items_map_parameters_to_other_secret_keys() -> None:
    spec = IngestionSpec.model_validate(
        SPEC.wire()
        | {
            "source": {
                "uri": "s3://",
                "table": "b/x.csv",
                "credentials": {
                    "secretRef": {"name": "aws"},
                    "items": [
                        {"parameter": "access_key_id", "key": "AWS_ACCESS_KEY_ID"},
                        {"parameter": "secret_access_key", "key": "AWS_SECRET_ACCESS_KEY"},
                    ],
                },
            }
        }
    )
    env = {var["name"]: var for var in _container(_render(spec))["env"]}
    assert env["KINGEST_SOURCE_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["key"] == (
        "AWS_ACCESS_KEY_ID"
    )
    assert "KINGEST_SOURCE_SESSION_TOKEN" not in env


def test_result_file_is_the_termination_message_path() -> None:
    container = _container(_render())
    env = {var["name"]: var.get("value") for var in container["env"]}
    assert env["KINGEST_RESULT_FILE"] == TERMINATION_MESSAGE_PATH
    assert container["terminationMessagePath"] == TERMINATION_MESSAGE_PATH
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_args_are_ingestr_flags() -> None:
    args = _container(_render())["args"]
    assert args[:4] == ["ingest", "--yes", "--progress", "log"]
    pairs = dict(zip(args[2::2], args[3::2], strict=False))
    assert pairs["--source-uri"] == "s3://?endpoint_url=http://minio:9000"
    assert pairs["--source-table"] == "my_bucket/students/*.csv"
    assert pairs["--dest-table"] == "processed.students"
    assert pairs["--incremental-strategy"] == "merge"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--primary-key"] == ["id", "term"]


def test_the_runner_parses_every_load_field_back_from_the_args() -> None:
    """Each load field reaches the runner: its own parser reads the Job's arguments back."""
    spec = SPEC.model_copy(
        update={
            "incremental_key": "updated_at",
            "mask": ["email:hash", "salary:round:1000"],
            "schema_contract": "discard_row",
            "schema_naming": "direct",
            "sql_limit": 7,
            "sql_exclude_columns": ["notes", "raw"],
            "yield_limit": 3,
            "page_size": 100,
        }
    )
    options = load_options(_container(_render(spec))["args"][1:])

    assert options.strategy is Strategy.MERGE and options.primary_key == ("id", "term")
    assert options.incremental_key == "updated_at"
    assert [(m.column, m.algorithm, m.param) for m in options.masks] == [
        ("email", "hash", None),
        ("salary", "round", 1000.0),
    ]
    assert options.schema_contract is Contract.DISCARD_ROW
    assert options.schema_naming is Naming.DIRECT
    assert (options.sql_limit, options.sql_exclude_columns) == (7, ("notes", "raw"))
    assert (options.yield_limit, options.page_size) == (3, 100)


def test_unset_load_fields_leave_the_runner_its_defaults() -> None:
    options = load_options(_container(_render())["args"][1:])
    assert options == LoadOptions(strategy=Strategy.MERGE, primary_key=("id", "term"))


def test_job_and_pod_carry_the_ingestion_labels_and_run_annotations() -> None:
    job = _render(run=Run("Requested", 3, "again"))
    template = job["spec"]["template"]["metadata"]
    assert template["labels"]["kingest.io/ingestion-uid"] == "1234-abcd"
    assert job["metadata"]["labels"]["kingest.io/ingestion-uid"] == "1234-abcd"
    assert template["annotations"]["kingest.io/ingestion"] == "students"
    assert job["metadata"]["annotations"]["kingest.io/trigger"] == "Requested"
    assert job["metadata"]["annotations"]["kingest.io/run-request"] == "again"


def test_user_pod_labels_cannot_override_the_operator_labels() -> None:
    spec = SPEC.model_copy(
        update={
            "runner": SPEC.runner.model_copy(
                update={"pod_labels": {"kingest.io/ingestion-uid": "other", "team": "data"}}
            )
        }
    )
    labels = _render(spec)["spec"]["template"]["metadata"]["labels"]
    assert labels["kingest.io/ingestion-uid"] == "1234-abcd"
    assert labels["team"] == "data"


def test_manifest_is_plain_json() -> None:
    json.dumps(_render())


def test_installation_defaults_apply_where_the_spec_sets_nothing() -> None:
    defaults = RunnerDefaults(
        image="registry.local/kingest:2",
        resources={"limits": {"memory": "2Gi"}},
        security_context={"runAsUser": 1000, "allowPrivilegeEscalation": True},
    )
    container = _container(render_job(META, SPEC, Run("Generation", 3), defaults, "t"))
    assert container["image"] == "registry.local/kingest:2"
    assert container["resources"] == {"limits": {"memory": "2Gi"}}
    assert container["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["allowPrivilegeEscalation"] is False  # never weakened
    own = SPEC.model_copy(
        update={"runner": SPEC.runner.model_copy(update={"resources": {"limits": {"cpu": "1"}}})}
    )
    assert _container(render_job(META, own, Run("Generation", 3), defaults, "t"))["resources"] == {
        "limits": {"cpu": "1"}
    }
