"""The command line's pure parts: URIs, flags from the environment, results, redaction."""

from __future__ import annotations

import json

import pytest

from kingest.runner.cli import ingest, main
from kingest.runner.errors import InvalidUri, UsageError, redact
from kingest.runner.glob import ObjectGlob, glob_to_regex
from kingest.runner.result import RunResult
from kingest.runner.uri import DuckDBUri, S3Uri, parse_uri


def test_unknown_s3_parameters_are_named_with_a_suggestion() -> None:
    with pytest.raises(InvalidUri, match=r"'acess_key_id'.*did you mean 'access_key_id'"):
        S3Uri.from_parsed(parse_uri("s3://?acess_key_id=AKIA&secret_access_key=s", "source", {}))


def test_layout_is_a_destination_only_parameter() -> None:
    with pytest.raises(InvalidUri, match="layout"):
        S3Uri.from_parsed(parse_uri("s3://?layout={table_name}.{ext}", "source", {}))


def test_environment_parameters_merge_into_the_query_and_conflicts_name_the_variable() -> None:
    env = {"KINGEST_SOURCE_SESSION_TOKEN": "tok-123456", "KINGEST_SOURCE_REGION": "eu-west-1"}
    uri = S3Uri.from_parsed(parse_uri("s3://?access_key_id=a&secret_access_key=b", "source", env))
    assert uri.region == "eu-west-1" and uri.session_token.get_secret_value() == "tok-123456"
    with pytest.raises(UsageError, match="KINGEST_SOURCE_REGION") as raised:
        parse_uri("s3://?region=us-east-1", "source", env)
    assert "eu-west-1" not in str(raised.value)


def test_a_validation_error_never_quotes_the_value() -> None:
    with pytest.raises(InvalidUri) as raised:
        S3Uri.from_parsed(parse_uri("s3://?endpoint_url=not-a-url-SECRETISH", "source", {}))
    assert "endpoint_url" in str(raised.value) and "SECRETISH" not in str(raised.value)


def test_duckdb_uris_with_three_and_four_slashes() -> None:
    assert str(
        DuckDBUri.from_parsed(parse_uri("duckdb:///rel.duckdb", "destination", {})).path
    ) == ("rel.duckdb")
    absolute = DuckDBUri.from_parsed(parse_uri("duckdb:////abs/x.duckdb", "destination", {}))
    assert str(absolute.path) == "/abs/x.duckdb"


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("**/*.csv", "root.csv", True),
        ("**/*.csv", "a/b/c.csv", True),
        ("*.csv", "a/b.csv", False),
        ("a/?.csv", "a/xy.csv", False),
        ("a/[!x].csv", "a/y.csv", True),
        ("a/[xy].csv", "a//.csv", False),
        ("a/b.csv", "a/b.csv", True),
        ("vendor#1/*.csv", "vendor#1/x.csv", True),
    ],
)
def test_glob_semantics(pattern: str, key: str, matches: bool) -> None:
    assert (glob_to_regex(pattern).fullmatch(key) is not None) is matches


def test_listing_starts_at_the_longest_literal_prefix_and_hints_split_off() -> None:
    glob = ObjectGlob.parse("bkt/logs/2026-11-*/part?.csv.gz#csv_headless#encoding=latin-1")
    assert glob.prefix == "logs/2026-11-"
    assert (glob.hints.format, glob.hints.encoding) == ("csv_headless", "latin-1")
    assert ObjectGlob.parse("bkt/vendor#1/x.csv").pattern == "vendor#1/x.csv"


def test_the_result_json_stays_within_4096_bytes_trimming_tables_first() -> None:
    result = RunResult(
        status="failed",
        tables={f"schema.table_{i}": i for i in range(500)},
        error="x" * 5000,
        reason="DataError",
    )
    text = result.to_json()
    doc = json.loads(text)
    assert len(text.encode()) <= 4096
    assert doc["tables_trimmed"] is True and doc["reason"] == "DataError"
    assert doc["error"].startswith("xxx")


def test_redact_replaces_every_secret() -> None:
    assert redact("key=abcd1234 and abcd1234", ["abcd1234"]) == "key=*** and ***"


def test_missing_flags_are_a_usage_error_naming_flag_and_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert ingest(["--source-table", "b/x.csv"], environ={}) == 2
    out, err = capsys.readouterr()
    assert "--source-uri" in err and "SOURCE_URI" in err
    assert json.loads(out.splitlines()[-1])["reason"] == "UsageError"


def test_secrets_in_a_bad_uri_never_reach_the_output(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--source-uri", "s3://?access_key_id=AKIAEXAMPLE&secret_access_key=TopSecret99&bogus=1",
        "--source-table", "b/x.csv", "--dest-uri", "duckdb:///x.duckdb", "--dest-table", "t",
    ]  # fmt: skip
    assert ingest(argv, environ={}) == 2
    out, err = capsys.readouterr()
    assert "bogus" in err
    assert "TopSecret99" not in out + err and "AKIAEXAMPLE" not in out + err


def test_debug_shows_the_traceback_of_the_failure_without_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        "--source-uri", "s3://?access_key_id=AKIAEXAMPLE&secret_access_key=TopSecret99&bogus=1",
        "--source-table", "b/x.csv", "--dest-uri", "duckdb:///x.duckdb", "--dest-table", "t",
    ]  # fmt: skip
    assert ingest([*argv, "--debug"], environ={}) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "InvalidUri" in err and "uri.py" in err  # the frame that raised
    assert "TopSecret99" not in err and "AKIAEXAMPLE" not in err
    assert ingest(argv, environ={}) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_help_documents_every_flag_and_its_environment_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    out = capsys.readouterr().out
    flags = "--source-uri --incremental-strategy --primary-key --columns --interval-start"
    for flag in [*flags.split(), "--extract-parallelism", "--page-size", "--full-refresh"]:
        assert flag in out
    assert "INGESTR_SOURCE_URI" in out and "DESTINATION_TABLE" in out


def test_a_terminal_width_in_columns_is_not_taken_for_column_types() -> None:
    from kingest.runner.cli import _options, _parser, _resolve_flags

    required = ["ingest", "--source-uri", "s3://", "--source-table", "b/x.csv",
                "--dest-uri", "duckdb:///x.duckdb"]  # fmt: skip
    args = _parser().parse_args(required)
    assert _options(_resolve_flags(args, {"COLUMNS": "80"})).columns == ()
    typed = _options(_resolve_flags(args, {"COLUMNS": "id:bigint"})).columns
    assert [(c.name, c.type_name) for c in typed] == [("id", "bigint")]
