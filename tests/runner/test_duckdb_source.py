"""The DuckDB source: read-only Arrow streams of one table, and DuckDB -> DuckDB end to end."""

from __future__ import annotations

import os
import subprocess
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from kingest.runner.duckdb_source import DuckDBSource, DuckDBTable
from kingest.runner.errors import DataError, InvalidUri, UsageError
from kingest.runner.interfaces import LoadOptions
from kingest.runner.uri import parse_uri

KINGEST = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kingest")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "src.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE SCHEMA sales; CREATE TABLE sales.orders AS SELECT range AS id, "
            "DATE '2024-01-01' + range::INT AS day FROM range(10000); "
            "CREATE TABLE plain AS SELECT 1 AS one"
        )
    return path


def source(uri: str, table: str, **options: object) -> DuckDBSource:
    return DuckDBSource.from_uri(parse_uri(uri, "source", {}), table, LoadOptions(**options))


def test_table_names_default_to_the_main_schema() -> None:
    assert DuckDBTable.parse("users") == DuckDBTable("main", "users")
    assert DuckDBTable.parse("public.users") == DuckDBTable("public", "users")
    for bad in ("", "a.b.c", ".users", "public."):
        with pytest.raises(UsageError):
            DuckDBTable.parse(bad)


def test_streams_the_table_in_batches_of_page_size_and_counts_rows(db: Path) -> None:
    with source(f"duckdb:///{db}", "sales.orders", page_size=4096).open() as stream:
        sizes = [batch.num_rows for batch in stream.reader]
        assert stream.name == "orders"
        assert stream.stats.rows == 10000
    assert sizes == [4096, 4096, 1808]


def test_relative_path_is_relative_to_the_working_directory(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(db.parent)
    with source("duckdb:///src.duckdb", "plain").open() as stream:
        assert stream.reader.read_all().to_pylist() == [{"one": 1}]


def test_interval_includes_both_ends_as_ingestr(db: Path) -> None:
    options = {
        "incremental_key": "day",
        "interval_start": "2024-01-10",
        "interval_end": "2024-01-20",
    }
    with source(f"duckdb:///{db}", "sales.orders", **options).open() as stream:
        days = stream.reader.read_all().column("day").to_pylist()
    assert len(days) == 11
    assert str(min(days)) == "2024-01-10" and str(max(days)) == "2024-01-20"


def test_interval_without_incremental_key_is_a_usage_error(db: Path) -> None:
    with pytest.raises(UsageError, match="--incremental-key"):
        source(f"duckdb:///{db}", "plain", interval_start="2024-01-01")


def test_missing_file_and_table_and_key_are_named(db: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.duckdb"):
        source(f"duckdb:///{tmp_path / 'nope.duckdb'}", "plain").open()
    with pytest.raises(DataError, match=r"'sales\.order' not found .*sales\.orders"):
        source(f"duckdb:///{db}", "sales.order").open()
    with pytest.raises(DataError, match="'updated_at' not found"):
        source(f"duckdb:///{db}", "sales.orders", incremental_key="updated_at").open()


def test_uri_parameters_are_rejected(db: Path) -> None:
    with pytest.raises(InvalidUri):
        source(f"duckdb:///{db}?read_only=false", "plain")


def test_the_file_is_not_locked_for_others_while_streaming(db: Path) -> None:
    with source(f"duckdb:///{db}", "plain").open() as stream:
        # Another process may open the file too (read-only) while the stream is open.
        other = subprocess.run(
            [
                str(Path(KINGEST).with_name("python")),
                "-c",
                f"import duckdb; print(duckdb.connect({str(db)!r}, read_only=True)"
                ".execute('SELECT count(*) FROM plain').fetchall()[0][0])",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        stream.reader.read_all()
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == "1"


def test_duckdb_to_duckdb(db: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest.duckdb"
    proc = subprocess.run(
        [
            KINGEST,
            "ingest",
            "--source-uri",
            f"duckdb:///{db}",
            "--source-table",
            "sales.orders",
            "--dest-uri",
            f"duckdb:///{dest}",
            "--dest-table",
            "copied.orders",
        ],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with duckdb.connect(str(dest), read_only=True) as con:
        ((count, last_day),) = con.execute(
            "SELECT count(*), max(day) FROM copied.orders"
        ).fetchall()
    assert (count, last_day) == (10000, date(2024, 1, 1) + timedelta(days=9999))


def test_table_names_resolve_case_insensitively_like_duckdb(tmp_path: Path) -> None:
    path = tmp_path / "mixed.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute('CREATE SCHEMA "Sales"; CREATE TABLE "Sales"."Orders" AS SELECT 1 AS "Id"')
    with source(f"duckdb:///{path}", "sales.orders", incremental_key="id").open() as stream:
        assert stream.reader.read_all().to_pylist() == [{"Id": 1}]
