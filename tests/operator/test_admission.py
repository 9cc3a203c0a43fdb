"""The admission webhook's decision (no cluster): the reconcile's own checks, at apply time."""

from __future__ import annotations

import copy
from typing import Any

import kopf
import pytest

from kingest.operator.admission import reject_unrunnable_spec
from kingest.operator.validate import admission_problem

GOOD: dict[str, Any] = {
    "source": {
        "uri": "s3://?endpoint_url=http://minio:9000",
        "table": "my-bucket/events/*.csv",
        "credentials": {"secretRef": {"name": "s3-credentials"}},
    },
    "destination": {"uri": "duckdb:////data/events.duckdb", "table": "raw.events"},
}


def changed(**fields: Any) -> dict[str, Any]:
    """GOOD with `side__field=value` (or a top-level `field=value`) changed."""
    spec = copy.deepcopy(GOOD)
    for key, value in fields.items():
        side, _, name = key.rpartition("__")
        (spec[side] if side else spec)[name] = value
    return spec


def as_spec(spec: dict[str, Any]) -> kopf.Spec:
    """The spec as kopf hands it to the handler: a view of the object's body."""
    return kopf.Body({"metadata": {}, "spec": spec}).spec


BAD = {
    "scheme": (changed(source__uri="ftp://host/x"), "ftp:// is not supported as a source"),
    "cron": (changed(schedule="61 * * * *"), "spec.schedule '61 * * * *'"),
    "time zone": (changed(schedule="@hourly", timeZone="Mars/Base"), "Mars/Base"),
    "table without bucket": (changed(source__table="*.csv"), "expected '<bucket>/<file glob>'"),
    "keys in the URI": (
        changed(source__uri="s3://?access_key_id=AKIAKEY&secret_access_key=VERYSECRET"),
        "spec.source.uri holds a secret",
    ),
    "unknown field": (changed(incrementalStrategy="upsert"), "incrementalStrategy"),
    "scd2 without a key": (
        changed(incrementalStrategy="scd2"),
        "spec.incrementalStrategy scd2 needs spec.primaryKey",
    ),
    "scd2 into S3": (
        changed(
            incrementalStrategy="scd2",
            primaryKey=["id"],
            destination={"uri": "s3://?endpoint_url=http://minio:9000", "table": "lake/events"},
        ),
        "'scd2' is not supported for an S3 destination",
    ),
    "unknown mask": (changed(mask=["email:scramble"]), "spec.mask 'email:scramble': unknown"),
    "mask parameter": (changed(mask=["salary:round:x"]), "round parameter must be a number"),
    # The key would be in the Job's arguments for anyone who can read Jobs.
    "hmac key inline": (changed(mask=["email:hmac:VERYSECRET"]), "hmac mask's key is a secret"),
    "contract": (changed(schemaContract="strict"), "spec.schemaContract"),
}

EVERY_LOAD_FIELD = changed(
    incrementalStrategy="append",
    incrementalKey="id",
    mask=["email:hash", "salary:round:1000"],
    schemaContract="freeze",
    schemaNaming="direct",
    sqlLimit=5,
    sqlExcludeColumns=["notes"],
    yieldLimit=2,
    pageSize=100,
)


def test_a_runnable_spec_passes() -> None:
    assert admission_problem(GOOD) is None
    assert admission_problem(EVERY_LOAD_FIELD) is None
    reject_unrunnable_spec(spec=as_spec(GOOD), old=None, operation="CREATE")


@pytest.mark.parametrize("case", BAD)
def test_an_unrunnable_spec_is_rejected_with_the_status_message(case: str) -> None:
    spec, expected = BAD[case]
    with pytest.raises(kopf.AdmissionError) as rejected:
        reject_unrunnable_spec(spec=as_spec(spec), old=None, operation="CREATE")
    assert expected in str(rejected.value)
    assert rejected.value.code == 422
    assert "VERYSECRET" not in str(rejected.value)


def test_an_update_that_keeps_an_old_spec_passes_one_that_changes_it_is_checked() -> None:
    bad, _ = BAD["scheme"]
    old = kopf.Body({"spec": bad, "metadata": {}})
    reject_unrunnable_spec(spec=as_spec(bad), old=old, operation="UPDATE")  # a label, say
    with pytest.raises(kopf.AdmissionError):
        reject_unrunnable_spec(
            spec=as_spec(changed(source__table="x")), old=old, operation="UPDATE"
        )
