"""--schema-naming: dlt's snake_case names, duplicates made unique, direct kept as written."""

from __future__ import annotations

import pytest

from kingest.runner.errors import UsageError
from kingest.runner.naming import Naming, destination_names, snake_case


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("First Name", "first_name"),
        ("userName", "user_name"),
        ("UserName", "user_name"),
        ("HTTPServer", "http_server"),
        ("getHTTPResponse", "get_http_response"),
        ("123column", "_123column"),
        ("column123", "column123"),
        ("column_", "columnx"),
        ("column__", "columnxx"),
        ("column__name", "column__name"),
        ("__123fields", "_123fields"),
        ("column-name", "column_name"),
        ("column+name", "columnxname"),
        ("column*name", "columnxname"),
        ("column@name", "columnaname"),
        ("column|name", "columnlname"),
        ("column.name", "column_name"),
        ("  padded  ", "padded"),
        ("a   b", "a_b"),
        ("e-mail (work)", "e_mail_workx"),
    ],
)
def test_snake_case_follows_dlt(name: str, expected: str) -> None:
    assert snake_case(name) == expected


def test_names_that_collide_get_a_numbered_suffix_in_order() -> None:
    names = ["First Name", "first_name", "firstName", "first_name_1"]
    assert destination_names(names, Naming.SNAKE_CASE) == [
        "first_name", "first_name_1", "first_name_2", "first_name_1_1",
    ]  # fmt: skip


def test_direct_keeps_names_and_bookkeeping_columns_are_never_renamed() -> None:
    assert destination_names(["First Name", "ID"], Naming.DIRECT) == ["First Name", "ID"]
    assert destination_names(["_dlt_load_id", "_dlt_id"], Naming.SNAKE_CASE) == [
        "_dlt_load_id", "_dlt_id",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, Naming.SNAKE_CASE), ("default", Naming.SNAKE_CASE), ("Direct", Naming.DIRECT)],
)
def test_naming_values(value: str | None, expected: Naming) -> None:
    assert Naming.parse(value) is expected


def test_an_unknown_naming_names_the_flag() -> None:
    with pytest.raises(UsageError, match="--schema-naming 'camel'"):
        Naming.parse("camel")
