"""dlt's pipeline state, bit for bit: values computed by dlt 1.21 itself (`dlt.common.utils.
digest128`, `json.dumps`, `versioned_state.generate_state_version_hash` / `compress_state`)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from kingest.runner import dlt_state
from kingest.runner.dlt_state import CursorAddress, CursorState

ROWS = [
    {"id": 1, "name": "a é"},
    {
        "id": 2,
        "ts": datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC),
        "d": date(2024, 1, 2),
        "n": None,
        "f": 1.5,
        "dec": Decimal("1.20"),
    },
    5,
    [1, "x"],
    {"ts": datetime(2024, 1, 1)},
]
DLT_HASHES = [
    "OI99rIsMxfmqL08u1CWZ",
    "tDFQ2xNxTUkSUEB7KNyH",
    "tIXXf9wiHssyAgHEzQnu",
    "T2u7rnGEfmXm0tVkRBws",
    "LZFyd3KAmgp9EhIjvjJy",
]
STATE = {
    "_state_version": 2,
    "_state_engine_version": 4,
    "pipeline_name": "p",
    "sources": {
        "p": {
            "resources": {
                "users": {
                    "incremental": {
                        "ts": {
                            "initial_value": None,
                            "last_value": datetime(2024, 1, 1, tzinfo=UTC),
                            "unique_hashes": ["x"],
                        },
                        "d": {"last_value": date(2024, 1, 1)},
                        "dec": {"last_value": Decimal("3.5")},
                    }
                }
            }
        }
    },
}
DLT_STATE_HASH = "KVtGySiab6wXHjwcOckj6rSQ4tIeTeqHjr9W5e502wY="
DLT_COMPRESSED = (
    "eNptjV8KwjAMxu+SV6vUOl96Dt9ESpnBFbps9s8QxsDTqLfzCrbT4RBDCMkvX770oHzQAVWHzpuGQAo2IaSTodmmYN"
    "CaFm2GpGsECS0w8E10JXqQfRpTcTgj0afr3BgqHdZIQds8hg80wWirOm1jsqNoLQOrfZgIPK93wUWx5OuUO87lmIux"
    "pt+RzDmiqrSv8r89XOAwMDhm8x+fx9cHsgTLP6LbZrWF4R0vY8Vgdg=="
)


def test_row_hashes_are_dlts() -> None:
    assert [dlt_state.row_hash(row) for row in ROWS] == DLT_HASHES


def test_state_hash_and_compressed_text_are_dlts() -> None:
    assert dlt_state.version_hash(STATE) == DLT_STATE_HASH
    assert dlt_state.compress(STATE) == DLT_COMPRESSED


def test_typed_values_come_back_as_they_were() -> None:
    assert dlt_state.decompress(DLT_COMPRESSED) == STATE


def test_next_state_keeps_other_cursors_and_moves_the_version_only_on_change() -> None:
    users = CursorAddress("p", "users", "ts")
    orders = CursorAddress("p", "orders", "id")

    def state(previous: dict | None, cursor: tuple[CursorAddress, CursorState] | None) -> dict:  # type: ignore[type-arg]
        return dlt_state.next_state(
            previous,
            pipeline_name="p",
            schema_name="p",
            dataset_name="d",
            destination_type="t",
            cursor=cursor,
        )

    first = state(None, (users, CursorState(1)))
    second = state(first, (orders, CursorState(7)))
    third = state(second, None)

    assert dlt_state.cursor_in(third, users) == CursorState(1)
    assert dlt_state.cursor_in(third, orders) == CursorState(7)
    assert (first["_state_version"], second["_state_version"], third["_state_version"]) == (1, 2, 2)
