"""Layout templates expand to the keys dlt would write, and bad layouts fail before any write."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from kingest.runner.layout import (
    DEFAULT_LAYOUT,
    Layout,
    LayoutError,
    LoadStamp,
    check_table_name,
    check_table_prefix,
    load_id_pattern,
)
from kingest.runner.s3_destination import key_safe_table_name

# Sunday 2026-11-01 07:08:09.123456 UTC
STAMP = LoadStamp(
    load_id="1793516889.123456", started_at=datetime(2026, 11, 1, 7, 8, 9, 123456, tzinfo=UTC)
)


def render(template: str, **overrides: str) -> str:
    args = {
        "table_name": "users",
        "schema_name": "sch",
        "stamp": STAMP,
        "file_id": "0ea79f85c0",
        "ext": "parquet",
    } | overrides
    return Layout.parse(template).render(**args)


def test_default_layout_is_table_folder_with_load_and_file_id() -> None:
    assert Layout.parse(None).template == DEFAULT_LAYOUT
    assert render(DEFAULT_LAYOUT) == "users/1793516889.123456.0ea79f85c0.parquet"


def test_table_name_ext_layout_is_one_file_named_after_the_table() -> None:
    layout = Layout.parse("{table_name}.{ext}")
    assert not layout.splits_files
    assert not layout.unique_per_load
    assert render("{table_name}.{ext}") == "users.parquet"


def test_extension_is_appended_when_layout_has_no_ext() -> None:
    assert render("{table_name}/{load_id}", ext="csv") == "users/1793516889.123456.csv"


@pytest.mark.parametrize(
    ("placeholder", "expected"),
    [
        ("schema_name", "sch"),
        ("load_id", "1793516889.123456"),
        ("file_id", "0ea79f85c0"),
        ("ext", "parquet"),
        ("curr_date", "2026-11-01"),
        ("timestamp", "1793516889"),
        ("timestamp_ms", "1793516889123"),
        ("load_package_timestamp", "1793516889"),
        ("load_package_timestamp_ms", "1793516889123"),
        ("YYYY", "2026"),
        ("YY", "26"),
        ("Y", "2026"),
        ("MMMM", "november"),
        ("MMM", "nov"),
        ("MM", "11"),
        ("M", "11"),
        ("DD", "01"),
        ("D", "1"),
        ("HH", "07"),
        ("H", "7"),
        ("mm", "08"),
        ("m", "8"),
        ("dddd", "sunday"),
        ("ddd", "sun"),
        ("dd", "su"),
        ("d", "0"),
        ("ss", "09"),
        ("s", "9"),
        ("SSSS", "1234"),
        ("SSS", "123"),
        ("SS", "12"),
        ("S", "1"),
        ("Q", "4"),
    ],
)
def test_each_placeholder_expands_like_dlt(placeholder: str, expected: str) -> None:
    template = "{table_name}/x-{" + placeholder + "}-y.{ext}"
    assert render(template) == f"users/x-{expected}-y.parquet"


def test_monday_is_weekday_one() -> None:
    monday = LoadStamp("1", datetime(2026, 11, 2, tzinfo=UTC))
    assert render("{table_name}/{d}-{dddd}", stamp=monday) == "users/1-monday.parquet"


def test_load_stamp_load_id_looks_like_dlts() -> None:
    stamp = LoadStamp.now()
    assert re.fullmatch(r"\d{10}\.\d{1,7}", stamp.load_id)
    assert abs(float(stamp.load_id) - stamp.started_at.timestamp()) < 1e-5


def test_unknown_placeholder_is_named_in_the_error() -> None:
    with pytest.raises(LayoutError, match=r"unknown placeholder\(s\) \{tabel_name\}"):
        Layout.parse("{tabel_name}/{table_name}.{ext}")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{load_id}.{ext}", "must contain {table_name}"),
        ("{load_id}/{table_name}/{file_id}", r"only \{schema_name\} may come before"),
        ("{table_name}{load_id}", "literal separator"),
        ("/{table_name}/{file_id}", "must not start with '/'"),
        ("{table_name}//{file_id}", "contain '//'"),
        ("{table_name:>5}/x", "plain {name}"),
        ("{table_name}/{", "not a valid template"),
    ],
)
def test_invalid_layouts_are_rejected(template: str, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        Layout.parse(template)


def test_schema_name_may_precede_table_name() -> None:
    layout = Layout.parse("{schema_name}/{table_name}/{load_id}.{file_id}.{ext}")
    assert layout.table_prefix(table_name="users", schema_name="s") == "s/users/"


def test_table_prefix_separates_tables_sharing_a_name_start() -> None:
    layout = Layout.parse("{table_name}.{ext}")
    prefix = layout.table_prefix(table_name="event", schema_name="s")
    assert prefix == "event."
    assert not render("{table_name}.{ext}", table_name="events").startswith(prefix)
    assert Layout.parse("{table_name}").table_prefix(table_name="t", schema_name="s") == "t."


@pytest.mark.parametrize("name", ["a/b", "", "..", "x{y}"])
def test_table_names_that_cannot_be_keys_are_rejected(name: str) -> None:
    with pytest.raises(LayoutError):
        check_table_name(name)


@pytest.mark.parametrize("prefix", ["_dlt_loads/", "_dlt_version/x/", "_dlt_pipeline_state/"])
def test_tables_on_bookkeeping_prefixes_are_rejected(prefix: str) -> None:
    with pytest.raises(LayoutError, match="collides with dlt's bookkeeping"):
        check_table_prefix(prefix, table_name="t")


def test_ordinary_prefixes_are_accepted() -> None:
    check_table_prefix("users/", table_name="users")
    check_table_prefix("_dlt_loads.", table_name="_dlt_loads")
    check_table_prefix("init.", table_name="init")


def test_load_id_pattern_finds_the_load_id_of_a_tables_keys() -> None:
    layout = Layout.parse("{schema_name}/{table_name}/{YYYY}/{load_id}.{file_id}.{ext}")
    pattern = load_id_pattern(layout, table_name="users", schema_name="s")
    assert pattern is not None
    match = pattern.fullmatch("s/users/2026/1795590735.1781251.0123456789.parquet")
    assert match is not None and match["load_id"] == "1795590735.1781251"
    assert pattern.fullmatch("s/userz/2026/1795590735.1781251.0123456789.parquet") is None
    assert (
        load_id_pattern(Layout.parse("{table_name}.{ext}"), table_name="t", schema_name="s") is None
    )


def test_source_names_become_clean_key_segments() -> None:
    assert key_safe_table_name("users") == "users"
    assert key_safe_table_name("my table") == "my_table"
    assert key_safe_table_name("students_details.csv") == "students_details"
    assert key_safe_table_name("part-*.csv.gz") == "part"
    assert key_safe_table_name("*.csv") == "data"
    assert key_safe_table_name("**") == "data"
