"""Is an Ingestion runnable? The runner's own URI and table checks, applied before any Job.

The operator reuses `kingest.runner` (URI parsing, the scheme registries and each
implementation's `from_uri`, which validate without I/O) rather than a second parser, so an
Ingestion is Invalid exactly when the runner would reject its command line. Two checks are
the operator's own: no secret written inline in a URI (it belongs in a Secret), and no
environment variable or volume the runner Pod reserves.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from kingest.operator.job import (
    RESERVED_ENV,
    RESERVED_ENV_PREFIXES,
    TMP_VOLUME,
    credential_items,
    runner_args,
)
from kingest.operator.schedule import InvalidSchedule, Schedule
from kingest.operator.spec import Endpoint, IngestionSpec
from kingest.runner.cli import load_options
from kingest.runner.errors import KingestError
from kingest.runner.interfaces import LoadOptions
from kingest.runner.pipeline import DESTINATIONS, SOURCES
from kingest.runner.uri import ENV_PREFIX, Side, is_secret_parameter, parse_uri

# Stands in for credential values the operator never sees: only their presence matters here.
_PLACEHOLDER = "kingest-placeholder"


class InvalidSpec(ValueError):
    """The spec cannot run; the message says which field and what to fix (never a value)."""


def parse_spec(raw: Mapping[str, Any]) -> IngestionSpec:
    """The spec as a model, or InvalidSpec naming each field at fault."""
    try:
        return IngestionSpec.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"]) or "spec"
            problems.append(f"spec.{where}: {error['msg']}")
        raise InvalidSpec("; ".join(problems)) from None


def _field(side: Side) -> str:
    return f"spec.{side}"


def _check_inline_secrets(side: Side, endpoint: Endpoint) -> None:
    assert endpoint.uri is not None
    uri = parse_uri(endpoint.uri, side, environ={})
    inline = sorted(k for k in uri.params if is_secret_parameter(k))
    if uri.password:
        inline.append("the password in the URI's user info")
    if inline:
        raise InvalidSpec(
            f"{_field(side)}.uri holds a secret ({', '.join(inline)}): remove it from the URI and "
            f"reference a Secret in {_field(side)}.credentials (or give the whole URI through "
            f"{_field(side)}.uriFrom.secretKeyRef)"
        )


def _credential_env(side: Side, endpoint: Endpoint) -> dict[str, str]:
    return {
        f"{ENV_PREFIX[side]}{item.parameter.upper()}": _PLACEHOLDER
        for item in credential_items(endpoint)
        if not item.optional
    }


def _check_side(side: Side, endpoint: Endpoint, options: LoadOptions) -> None:
    if endpoint.uri is None:
        return  # the URI lives in a Secret: only the runner can check it
    _check_inline_secrets(side, endpoint)
    uri = parse_uri(endpoint.uri, side, _credential_env(side, endpoint))
    registry = SOURCES if side == "source" else DESTINATIONS
    target = registry.get(uri.scheme)
    if target is None:
        raise InvalidSpec(
            f"{_field(side)}.uri: {uri.scheme}:// is not supported as a {side}; supported: "
            f"{', '.join(s + '://' for s in sorted(registry))}"
        )
    implementation = _implementation(target)
    implementation.from_uri(uri, endpoint.table, options)


def _implementation(target: str) -> Any:
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def preload() -> None:
    """Import every source and destination now (pyarrow, DuckDB, boto3: seconds on a busy
    machine), so that the first Ingestions checked after start-up do not wait for it."""
    for target in (*SOURCES.values(), *DESTINATIONS.values()):
        _implementation(target)


def _load_options(spec: IngestionSpec) -> LoadOptions:
    """The options the runner will parse from the Job's arguments, checked by its own parser
    (whose messages never quote an hmac key: it is a valid parameter)."""
    options = load_options(runner_args(spec)[1:])
    hmac = [mask.column for mask in options.masks if mask.algorithm == "hmac"]
    if hmac:
        raise InvalidSpec(
            f"spec.mask: an hmac mask's key is a secret and spec.mask becomes the Job's "
            f"arguments (column {', '.join(hmac)}); give hmac masks through spec.runner.env "
            "INGESTR_MASK with valueFrom.secretKeyRef instead"
        )
    return options


def _check_runner(spec: IngestionSpec) -> None:
    for var in spec.runner.env:
        name = str(var.get("name", ""))
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
            raise InvalidSpec(
                f"spec.runner.env: {name} is set by the operator; use source/destination "
                "credentials for URI parameters"
            )
    if any(volume.get("name") == TMP_VOLUME for volume in spec.runner.volumes):
        raise InvalidSpec(f"spec.runner.volumes: the name {TMP_VOLUME!r} is reserved for /tmp")


def validate(spec: IngestionSpec) -> None:
    """Raise InvalidSpec with what to fix when the runner would refuse this spec."""
    try:
        options = _load_options(spec)
        _check_side("source", spec.source, options)
        _check_side("destination", spec.destination, options)
    except KingestError as exc:
        # The runner speaks in flags (--source-uri); the user wrote spec fields.
        raise InvalidSpec(_in_spec_terms(exc.message)) from None
    _check_runner(spec)


_ENDPOINT_FIELDS = {
    "--source-uri": "spec.source.uri",
    "--source-table": "spec.source.table",
    "--dest-uri": "spec.destination.uri",
    "--dest-table": "spec.destination.table",
}


def _in_spec_terms(message: str) -> str:
    """The runner speaks in flags; the user wrote spec fields (--primary-key: spec.primaryKey)."""
    for flag, field in _ENDPOINT_FIELDS.items():
        message = message.replace(flag, field)
    return _FLAG.sub(lambda m: "spec." + to_camel(m.group(1).replace("-", "_")), message)


_FLAG = re.compile(r"--([a-z][a-z-]*[a-z])")


def admission_problem(raw: Mapping[str, Any]) -> str | None:
    """What the admission webhook rejects a spec for (None: it may run), in the words the
    status would use: the spec's checks above, and a schedule and time zone that parse."""
    try:
        spec = parse_spec(raw)
        validate(spec)
    except InvalidSpec as exc:
        return str(exc)
    if spec.schedule is not None:
        try:
            Schedule.parse(spec.schedule, spec.time_zone)
        except InvalidSchedule as exc:
            return f"spec.schedule {spec.schedule!r} (timeZone {spec.time_zone!r}): {exc}"
    return None
