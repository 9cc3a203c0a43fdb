"""The ``kingest`` command line: ``kingest ingest ...`` (ingestr's flags) and ``kingest operator``.

Every ``ingest`` flag can also come from the environment, as in ingestr (``SOURCE_URI`` or
``INGESTR_SOURCE_URI``, ...); a flag on the command line wins. The operator relies on this to
hand a Job a URI straight from a Secret.

Output: a summary for people, then the result as one JSON object on the last line of stdout
(also written to ``$KINGEST_RESULT_FILE``). Errors are one line on stderr without a traceback
(``--debug`` adds it); secret values never appear in any output.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from kingest.runner.errors import KingestError, UsageError, redact
from kingest.runner.interfaces import ColumnHint, LoadOptions, SourceStream, Strategy
from kingest.runner.masking import parse_masks
from kingest.runner.naming import Naming
from kingest.runner.result import RunResult
from kingest.runner.schema_contract import Contract


@dataclass(frozen=True)
class Flag:
    """One ``ingest`` flag and the environment variables that can set it."""

    name: str
    env: tuple[str, ...]
    help: str
    kind: str = "str"  # str | int | bool | list
    required: bool = False
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        """The flag's name in parsed values: ``--dest-table`` -> ``dest_table``."""
        return self.name[2:].replace("-", "_")


def _env(*names: str) -> tuple[str, ...]:
    return tuple(n for name in names for n in (name, f"INGESTR_{name}"))


FLAGS: tuple[Flag, ...] = (
    Flag(
        "--source-uri",
        _env("SOURCE_URI"),
        "URI of the source, e.g. 's3://?access_key_id=..&"
        "secret_access_key=..' (also endpoint_url, region, session_token, hive_partitioning, "
        "include_file_path; no keys: the default AWS credential chain). Keys may be given "
        "raw or percent-encoded: '+' and '/' in a secret stay as they are. CSV: only the "
        "empty field is NULL; nullstr=NA,n/a names more NULL tokens (as DuckDB's nullstr).",
        required=True,
    ),
    Flag(
        "--source-table",
        _env("SOURCE_TABLE"),
        "What to read: for S3 '<bucket>/<glob>' "
        "(** spans folders, * and ? do not, [..] classes) with optional hints '#csv', "
        "'#csv_headless', '#jsonl', '#ndjson', '#parquet', '#encoding=<name>'; for DuckDB "
        "'table', 'schema.table' or 'query:<SQL>' (:interval_start/:interval_end bound).",
        required=True,
    ),
    Flag(
        "--dest-uri",
        _env("DESTINATION_URI"),
        "URI of the destination, e.g. 'duckdb:///relative.duckdb' or 'duckdb:////abs/path.duckdb'.",
        required=True,
    ),
    Flag(
        "--dest-table",
        _env("DESTINATION_TABLE"),
        "Destination table, 'schema.table' (schema "
        "created if missing) or 'table'. Defaults to --source-table.",
    ),
    Flag(
        "--incremental-strategy",
        _env("INCREMENTAL_STRATEGY"),
        "replace (default): the table "
        "holds exactly this load; append: add rows (from S3 into DuckDB: only files that are "
        "new or changed since the table last loaded them); merge: upsert on --primary-key; "
        "delete+insert: delete rows whose --incremental-key values are loaded, then insert; "
        "scd2: keep every version of a row (by --primary-key) with _dlt_valid_from/_dlt_valid_to "
        "(DuckDB); none: the source decides (append). From a DuckDB table or query: with "
        "--incremental-key, a run loads only rows from the cursor the last run stored.",
        choices=tuple(s.value for s in Strategy),
    ),
    Flag(
        "--primary-key",
        _env("PRIMARY_KEY"),
        "Primary key column for merge and scd2; repeat the flag or give a comma-separated list.",
        kind="list",
    ),
    Flag(
        "--incremental-key",
        _env("INCREMENTAL_KEY"),
        "Column that orders the data; the "
        "delete+insert key, and the column --interval-start/--interval-end filter on. From a "
        "DuckDB table or query:, its last value is stored with the load and the next run reads "
        "from there (--full-refresh starts afresh). For S3, "
        "_ingestr_source_file_modified_at selects objects by modification time and adds it and "
        "_ingestr_source_file_path to every row.",
    ),
    Flag(
        "--interval-start",
        _env("INTERVAL_START"),
        "Load only rows with incremental key >= this value (ISO date/timestamp or number).",
    ),
    Flag(
        "--interval-end",
        _env("INTERVAL_END"),
        "Load only rows with incremental key <= this value (included, as in ingestr).",
    ),
    Flag(
        "--columns",
        _env("COLUMNS"),
        "Column types overriding inference, 'name:type,...' "
        "(text, bigint, double, bool, timestamp, date, time, decimal, binary, json); for "
        "headless CSV also the column names, in order.",
        kind="list",
    ),
    # -- SQL sources (DuckDB table or query:) --
    Flag(
        "--sql-limit",
        _env("SQL_LIMIT"),
        "Read at most this many rows from a DuckDB table or query: (in --incremental-key "
        "order when given).",
        kind="int",
    ),
    Flag(
        "--sql-exclude-columns",
        _env("SQL_EXCLUDE_COLUMNS"),
        "Columns to leave out of a DuckDB table or query:; repeat or comma-separate.",
        kind="list",
    ),
    Flag(
        "--full-refresh",
        _env("FULL_REFRESH"),
        "Drop the destination table's current contents first, whatever the strategy (and "
        "forget which files it had loaded).",
        kind="bool",
    ),
    Flag(
        "--yes",
        (*_env("YES"), "SKIP_CONFIRMATION"),
        "Do not ask for confirmation (kingest never asks; accepted for ingestr compatibility).",
        kind="bool",
    ),
    Flag(
        "--progress",
        _env("PROGRESS"),
        "Progress display: interactive (a live line, the "
        "default on a terminal), log (a line every 10 s), json (one JSON object per event on "
        "stderr, for log collectors) or none.",
        choices=("interactive", "log", "json", "none"),
    ),
    Flag(
        "--page-size", _env("PAGE_SIZE"), "Rows per record batch read from the source.", kind="int"
    ),
    Flag(
        "--extract-parallelism",
        _env("EXTRACT_PARALLELISM"),
        "Files read in parallel (default 5).",
        kind="int",
    ),
    Flag(
        "--loader-file-format",
        _env("LOADER_FILE_FORMAT"),
        "File format for file destinations (parquet, csv, jsonl); DuckDB ignores it.",
        choices=("parquet", "csv", "jsonl", "insert_values"),
    ),
    Flag(
        "--loader-file-size",
        _env("LOADER_FILE_SIZE"),
        "Rows per file for file destinations.",
        kind="int",
    ),
    Flag("--debug", _env("DEBUG"), "Show a traceback on failure.", kind="bool"),
    # ingestr's stream-shaping flags (runner/stream_shape.py).
    Flag(
        "--mask",
        _env("MASK"),
        "Mask a column before anything is written: 'column:algorithm[:param]'; repeat the "
        "flag or separate with commas. Algorithms: hash, sha256, md5, hmac:KEY, email, phone, "
        "credit_card, ssn, redact, stars, fixed[:VALUE], random, partial[:N], first_letter, "
        "uuid, sequential, round[:STEP], range[:WIDTH], noise[:LEVEL], date_shift[:DAYS], "
        "year_only, month_year.",
        kind="list",
    ),
    Flag(
        "--schema-naming",
        _env("SCHEMA_NAMING"),
        "Column names in the destination: default (dlt's snake_case, as ingestr: "
        "'First Name' -> first_name, a duplicate gets _1) or direct (as the source writes them).",
        choices=("default", "snake_case", "direct"),
    ),
    Flag(
        "--schema-contract",
        _env("SCHEMA_CONTRACT"),
        "When the source has a column or a column type the destination table lacks: evolve "
        "(default: add/accept it), freeze (fail, nothing written), discard_row (leave out rows "
        "with a value in it), discard_value (leave the column out).",
        choices=tuple(c.value for c in Contract),
    ),
    Flag(
        "--yield-limit",
        _env("YIELD_LIMIT"),
        "Load at most this many pages of --page-size rows (default page 25,000 rows).",
        kind="int",
    ),
    Flag(
        "--pipelines-dir",
        _env("PIPELINES_DIR"),
        "Accepted for ingestr compatibility; kingest keeps no local pipeline state (all state "
        "lives in the destination), so it is not used.",
    ),
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class _Parser(argparse.ArgumentParser):
    """Reports bad flags as :class:`UsageError`, so they get a result and exit code 2 too."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """Built once: parsing keeps no state in the parser, and the operator checks every new
    Ingestion's runner arguments with it (`load_options`), where building it each time was a
    quarter of the operator's event-loop samples while 500 Ingestions were created at once."""
    parser = _Parser(
        prog="kingest",
        description="ingestr-compatible data ingestion, also as a Kubernetes operator.",
    )
    commands = parser.add_subparsers(
        dest="command", metavar="{ingest,operator}", parser_class=_Parser
    )
    ingest = commands.add_parser(
        "ingest",
        help="copy a table or files from a source URI into a destination URI",
        description="Copy data from --source-uri/--source-table into --dest-uri/--dest-table. "
        "Each flag may also be set through the environment variables shown.",
    )
    for flag in FLAGS:
        env_help = f" [env: {', '.join(flag.env)}]"
        if flag.kind == "bool":
            ingest.add_argument(
                flag.name, action="store_true", default=None, help=flag.help + env_help
            )
        elif flag.kind == "list":
            ingest.add_argument(flag.name, action="append", help=flag.help + env_help)
        else:
            ingest.add_argument(
                flag.name,
                type=int if flag.kind == "int" else str,
                choices=flag.choices,
                help=flag.help + env_help,
            )
    commands.add_parser(
        "operator", help="run the Kubernetes operator (kopf arguments follow)", add_help=False
    )
    return parser


def _from_env(flag: Flag, environ: Mapping[str, str]) -> tuple[str, str] | None:
    for name in flag.env:
        if name not in environ:
            continue
        if name == "COLUMNS" and environ[name].strip().isdigit():
            # Shells and terminals export COLUMNS as the terminal width ("80"): that is not
            # ingestr's --columns (INGESTR_COLUMNS is unambiguous).
            continue
        return name, environ[name]
    return None


def _resolve_flags(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, object]:
    """Command-line values, else environment values (validated like flags), else None."""
    values: dict[str, object] = {}
    for flag in FLAGS:
        dest = flag.dest
        value = getattr(args, dest)
        if value is None:
            found = _from_env(flag, environ)
            if found is not None:
                value = _env_value(flag, *found)
        if value is None and flag.required:
            raise UsageError(f"missing {flag.name} (or environment variable {flag.env[0]})")
        values[dest] = value
    return values


def _env_value(flag: Flag, name: str, raw: str) -> object:
    if flag.kind == "bool":
        word = raw.strip().lower()
        if word not in _TRUE | _FALSE:
            raise UsageError(f"environment variable {name} must be true or false")
        return word in _TRUE
    if flag.kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise UsageError(f"environment variable {name} must be an integer") from None
    if flag.kind == "list":
        return [raw]
    if flag.choices and raw not in flag.choices:
        raise UsageError(f"environment variable {name} must be one of {', '.join(flag.choices)}")
    return raw


def _comma_list(values: object) -> tuple[str, ...]:
    """A repeatable, comma-separated flag's values as one tuple."""
    return tuple(
        part.strip()
        for value in values or []  # type: ignore[attr-defined]
        for part in str(value).split(",")
        if part.strip()
    )


def load_options(argv: Sequence[str]) -> LoadOptions:
    """The load options an ``ingest`` command line gives, checked as a run checks them, without
    the environment and without needing the URIs: the operator checks an Ingestion's runner
    arguments with it, so a spec is refused exactly when its run would be."""
    args = _parser().parse_args(["ingest", *argv])
    return _options({flag.dest: getattr(args, flag.dest) for flag in FLAGS})


def _options(values: dict[str, object]) -> LoadOptions:
    primary_key = _comma_list(values["primary_key"])
    for name in (
        "page_size",
        "extract_parallelism",
        "loader_file_size",
        "sql_limit",
        "yield_limit",
    ):
        value = values[name]
        if value is not None and int(value) < 1:  # type: ignore[call-overload]
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    strategy = Strategy(values["incremental_strategy"] or Strategy.REPLACE)
    if strategy is Strategy.SCD2 and not primary_key:
        raise UsageError("--incremental-strategy scd2 needs --primary-key")
    if strategy is Strategy.MERGE and not primary_key:
        raise UsageError("--incremental-strategy merge needs --primary-key")
    if strategy is Strategy.DELETE_INSERT and not values["incremental_key"] and not primary_key:
        raise UsageError("--incremental-strategy delete+insert needs --incremental-key")
    if (values["interval_start"] or values["interval_end"]) and not values["incremental_key"]:
        raise UsageError("--interval-start/--interval-end need --incremental-key")
    return LoadOptions(
        strategy=strategy,
        primary_key=primary_key,
        incremental_key=values["incremental_key"],
        interval_start=values["interval_start"],
        interval_end=values["interval_end"],
        columns=ColumnHint.parse_list([str(v) for v in values["columns"] or []]),
        full_refresh=bool(values["full_refresh"]),
        page_size=values["page_size"],
        extract_parallelism=values["extract_parallelism"] or 5,
        loader_file_format=values["loader_file_format"],
        loader_file_size=values["loader_file_size"],
        sql_limit=values["sql_limit"],
        sql_exclude_columns=_comma_list(values["sql_exclude_columns"]),
        masks=parse_masks([str(v) for v in values["mask"] or []]),
        schema_naming=Naming.parse(values["schema_naming"]),
        schema_contract=Contract(values["schema_contract"] or Contract.EVOLVE),
        yield_limit=values["yield_limit"],
    )


def _summary(result: RunResult) -> str:
    from kingest.runner.progress import human_bytes

    skipped = f"; {result.files_skipped} matched file(s) skipped" if result.files_skipped else ""
    if result.cursor and result.cursor["stored"]:
        skipped += f"; cursor {result.cursor['key']} at {result.cursor['value']}"
    if result.load_id is None:
        return f"Nothing to load{skipped}; {result.destination_table} left as it was"
    rate = result.rows / result.duration_s if result.duration_s > 0 else 0.0
    return (
        f"Loaded {result.rows:,} rows from {result.files} file(s) "
        f"({human_bytes(result.bytes)}) into {result.destination_table} in "
        f"{result.duration_s:.2f} s ({rate:,.0f} rows/s), load_id {result.load_id}{skipped}"
    )


def ingest(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """Run ``kingest ingest``; returns the process exit code (see :mod:`kingest.runner.errors`)."""
    from kingest.runner import console, pipeline

    environ = os.environ if environ is None else environ
    started = time.monotonic()
    # Secrets are collected before anything can fail, from every place a URI can come from.
    raw_uris = [a for a in argv if "://" in a]
    raw_uris += [found[1] for f in FLAGS[:3] if (found := _from_env(f, environ))]
    secrets = pipeline.secrets_in(raw_uris, environ)
    debug = "--debug" in argv or any(
        environ.get(name, "").lower() in _TRUE for name in _env("DEBUG")
    )
    result = RunResult(status="failed")
    progress = None
    mode = None
    trace = ""
    try:
        values = _resolve_flags(_parser().parse_args(["ingest", *argv]), environ)
        mode = values["progress"] or ("interactive" if sys.stderr.isatty() else "none")
        result.destination_table = str(values["dest_table"] or values["source_table"])
        request = pipeline.IngestRequest(
            source_uri=str(values["source_uri"]),
            source_table=str(values["source_table"]),
            dest_uri=str(values["dest_uri"]),
            dest_table=result.destination_table,
            options=_options(values),
        )
        source, destination = pipeline.prepare(request, environ)

        def on_open(stream: SourceStream) -> None:
            nonlocal progress
            console.resume_gc()
            if mode != "none":
                from kingest.runner.progress import ProgressLine

                progress = ProgressLine(stream, str(mode))

        outcome = pipeline.run(source, destination, on_open=on_open, options=request.options)
        result = RunResult(
            status="succeeded",
            load_id=outcome.load_id,
            rows=outcome.summary.rows,
            files=outcome.files,
            bytes=outcome.bytes,
            files_skipped=outcome.skipped_files,
            destination_table=outcome.summary.destination_table,
            tables=outcome.summary.tables,
            written=outcome.summary.written(),
            cursor=outcome.cursor,
        )
        code = 0
    except KingestError as exc:
        result.error, result.reason, code = exc.message, exc.reason, exc.exit_code
        trace = traceback.format_exc()
    except Exception as exc:  # the last resort: never a bare traceback, never a secret
        result.error = f"internal error: {type(exc).__name__}: {exc}"
        result.reason, code = "InternalError", 1
        trace = traceback.format_exc()
    finally:
        if progress is not None:
            progress.stop(succeeded=result.status == "succeeded")
        elif mode == "json":
            # Failed before the source opened: log collectors still get the run's end.
            from kingest.runner.progress import json_event

            print(json_event("end", status="error", rows=0), file=sys.stderr, flush=True)
    result.duration_s = time.monotonic() - started
    if code != 0:
        if debug:
            print(redact(trace, secrets), file=sys.stderr)
        result.error = redact(result.error or "", secrets)
        print(f"kingest: error ({result.reason}): {result.error}", file=sys.stderr)
        if code == 1 and not debug:
            print("kingest: run again with --debug to see a traceback", file=sys.stderr)
    else:
        print(redact(_summary(result), secrets))
    print(redact(result.to_json(), secrets), flush=True)
    try:
        result.write(dict(environ))
    except OSError as exc:
        print(f"kingest: cannot write the result file: {exc.strerror}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kingest`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "operator":
        # Imported only here: the ingest path never loads the Kubernetes libraries.
        from kingest.operator.main import main as operator_main

        return operator_main(argv[1:])
    if argv and argv[0] == "ingest":
        return ingest(argv[1:])
    try:
        _parser().parse_args(argv or ["--help"])
    except UsageError as exc:
        print(f"kingest: error: {exc.message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
