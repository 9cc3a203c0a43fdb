"""Object keys of an S3 destination: dlt's filesystem ``layout`` templates, expanded purely.

A layout is a template such as ``{table_name}/{load_id}.{file_id}.{ext}`` (the default) or
``{table_name}.{ext}``; keys are relative to the dataset root (the ``--dest-table`` path).
The placeholders and their meaning are dlt's (``dlt.destinations.path_utils``), so a layout
that works with ingestr/dlt produces the same keys here:

- ``{table_name}`` is required and only ``{schema_name}`` may come before it, followed by a
  literal separator: everything up to and including that separator is the *table prefix*,
  which is how the files of one table are found again (for ``replace``) without touching a
  table whose name merely starts the same (``event`` vs ``events``).
- Date tokens format the load's timestamp in UTC the way pendulum's ``format`` does, lower-cased
  (``{MMMM}`` is ``november``), as dlt does.
- Without ``{ext}`` the extension is appended (``.parquet``), as dlt does.

Validation happens in :meth:`Layout.parse`, before anything is written.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import UTC, datetime

DEFAULT_LAYOUT = "{table_name}/{load_id}.{file_id}.{ext}"

# The folders and marker dlt keeps at the dataset root; no table file may land there.
BOOKKEEPING_NAMES = ("_dlt_loads", "_dlt_pipeline_state", "_dlt_version", "init")

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_WEEKDAYS_SHORT = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")


def _format_date_token(token: str, moment: datetime) -> str:
    """One pendulum date token, English locale (dlt lower-cases the result)."""
    us = moment.microsecond
    weekday = moment.weekday()  # Monday == 0, as pendulum's day_of_week
    match token:
        case "YYYY" | "Y":
            return f"{moment.year:d}"
        case "YY":
            return f"{moment.year:d}"[2:]
        case "MMMM":
            return _MONTHS[moment.month - 1]
        case "MMM":
            return _MONTHS[moment.month - 1][:3]
        case "MM":
            return f"{moment.month:02d}"
        case "M":
            return f"{moment.month:d}"
        case "DD":
            return f"{moment.day:02d}"
        case "D":
            return f"{moment.day:d}"
        case "HH":
            return f"{moment.hour:02d}"
        case "H":
            return f"{moment.hour:d}"
        case "mm":
            return f"{moment.minute:02d}"
        case "m":
            return f"{moment.minute:d}"
        case "dddd":
            return _WEEKDAYS[weekday]
        case "ddd":
            return _WEEKDAYS[weekday][:3]
        case "dd":
            return _WEEKDAYS_SHORT[weekday]
        case "d":
            # pendulum numbers weekdays from Sunday == 0 here.
            return f"{(weekday + 1) % 7:d}"
        case "ss":
            return f"{moment.second:02d}"
        case "s":
            return f"{moment.second:d}"
        case "SSSS":
            return f"{us // 100:04d}"
        case "SSS":
            return f"{us // 1000:03d}"
        case "SS":
            return f"{us // 10000:02d}"
        case "S":
            return f"{us // 100000:01d}"
        case "Q":
            return f"{(moment.month - 1) // 3 + 1:d}"
    raise KeyError(token)


# dlt's placeholders, in the order of its documentation (messages list them this way).
NAMED_PLACEHOLDERS = (
    "schema_name",
    "table_name",
    "load_id",
    "file_id",
    "ext",
    "curr_date",
    "timestamp",
    "timestamp_ms",
    "load_package_timestamp",
    "load_package_timestamp_ms",
)
DATE_TOKENS = (
    *("YYYY", "YY", "Y", "MMMM", "MMM", "MM", "M", "DD", "D", "HH", "H", "mm", "m"),
    *("dddd", "ddd", "dd", "d", "ss", "s", "SSSS", "SSS", "SS", "S", "Q"),
)
DATE_PLACEHOLDERS = frozenset(DATE_TOKENS)
PLACEHOLDERS = DATE_PLACEHOLDERS | frozenset(NAMED_PLACEHOLDERS)

_SAFE_NAME = re.compile(r"^[^/\\{}]+$")


class LayoutError(ValueError):
    """The ``layout`` URI parameter cannot be used; the message says why and what to change."""


@dataclass(frozen=True)
class LoadStamp:
    """What every key of one load shares: its id and the moment it started (UTC)."""

    load_id: str
    started_at: datetime

    @classmethod
    def now(cls) -> LoadStamp:
        """A fresh stamp; ``load_id`` is the start time in seconds, as dlt's ``str(time())``."""
        started = datetime.now(UTC)
        return cls(load_id=str(started.timestamp()), started_at=started)

    @classmethod
    def from_load_id(cls, load_id: str) -> LoadStamp:
        """The stamp of a load whose id is a dlt-style unix time (``"1795581361.222229"``)."""
        try:
            started = datetime.fromtimestamp(float(load_id), UTC)
        except (ValueError, OverflowError, OSError):
            # Not a time: the load still needs one moment for its date placeholders.
            started = datetime.now(UTC)
        return cls(load_id=load_id, started_at=started)


@dataclass(frozen=True)
class Layout:
    """A validated layout template; build it with :meth:`parse`."""

    template: str
    placeholders: tuple[str, ...]

    @classmethod
    def parse(cls, template: str | None) -> Layout:
        """Validate ``template`` (``None`` or empty means dlt's default layout).

        Raises :class:`LayoutError` naming the offending placeholder or rule.
        """
        template = template or DEFAULT_LAYOUT
        try:
            parts = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise LayoutError(f"layout {template!r} is not a valid template: {exc}") from None
        placeholders: list[str] = []
        for _literal, name, spec, conversion in parts:
            if name is None:
                continue
            if spec or conversion or not name:
                raise LayoutError(
                    f"layout {template!r}: placeholders are plain {{name}} without format "
                    f"specs or conversions (got one at {{{name}...}})"
                )
            placeholders.append(name)
        unknown = [p for p in placeholders if p not in PLACEHOLDERS]
        if unknown:
            raise LayoutError(
                f"layout {template!r} has unknown placeholder(s) "
                f"{', '.join('{' + p + '}' for p in unknown)}; available: "
                f"{', '.join('{' + p + '}' for p in (*NAMED_PLACEHOLDERS, *DATE_TOKENS))}"
            )
        if "table_name" not in placeholders:
            raise LayoutError(
                f"layout {template!r} must contain {{table_name}}: without it the files of one "
                "table cannot be told apart from another's"
            )
        before = placeholders[: placeholders.index("table_name")]
        if any(p != "schema_name" for p in before):
            raise LayoutError(
                f"layout {template!r}: only {{schema_name}} may come before {{table_name}} "
                f"(found {', '.join('{' + p + '}' for p in before if p != 'schema_name')}), "
                "otherwise a table's previous files cannot be found to replace them"
            )
        after = template[template.index("{table_name}") + len("{table_name}") :]
        if after.startswith("{"):
            raise LayoutError(
                f"layout {template!r} needs a literal separator such as '/' or '.' right after "
                "{table_name}, otherwise table 'event' would also match files of table 'events'"
            )
        if template.startswith("/") or "//" in template:
            raise LayoutError(f"layout {template!r} must not start with '/' or contain '//'")
        return cls(template=template, placeholders=tuple(placeholders))

    @property
    def splits_files(self) -> bool:
        """Whether a table may be written as several files (the layout has ``{file_id}``)."""
        return "file_id" in self.placeholders

    @property
    def unique_per_load(self) -> bool:
        """Whether two loads can never produce the same key (``{load_id}`` or ``{file_id}``)."""
        return "load_id" in self.placeholders or "file_id" in self.placeholders

    def table_prefix(self, *, table_name: str, schema_name: str) -> str:
        """The key prefix every file of ``table_name`` starts with, and no other table's do.

        It ends with the literal separator after ``{table_name}`` (``users/`` or ``users.``).
        """
        end = self.template.index("{table_name}") + len("{table_name}")
        head = self.template[:end].format(schema_name=schema_name, table_name=table_name)
        tail = self.template[end:]
        # Without {ext} dlt appends ".<ext>", so a layout ending in {table_name} is followed by ".".
        return head + (tail[0] if tail else ".")

    def render(
        self,
        *,
        table_name: str,
        schema_name: str,
        stamp: LoadStamp,
        file_id: str,
        ext: str,
    ) -> str:
        """The key (relative to the dataset root) of one file of one table in one load."""
        moment = stamp.started_at.astimezone(UTC)
        seconds = int(moment.timestamp())
        millis = int(moment.timestamp() * 1000)
        values: dict[str, str] = {
            "schema_name": schema_name,
            "table_name": table_name,
            "load_id": stamp.load_id,
            "file_id": file_id,
            "ext": ext,
            "curr_date": moment.date().isoformat(),
            "timestamp": str(seconds),
            "timestamp_ms": str(millis),
            # One load is one package here, so the package timestamp is the load's start.
            "load_package_timestamp": str(seconds),
            "load_package_timestamp_ms": str(millis),
        }
        for token in DATE_TOKENS:
            values[token] = _format_date_token(token, moment).lower()
        key = self.template.format(**values)
        if "ext" not in self.placeholders:
            key += f".{ext}"
        return key


def load_id_pattern(layout: Layout, *, table_name: str, schema_name: str) -> re.Pattern[str] | None:
    """A regex matching this table's keys and capturing their ``load_id``, if the layout has one.

    Used to find files of loads that never committed (a run that died after some of its
    files were complete). Other placeholders match any text within one path segment.
    """
    if "load_id" not in layout.placeholders:
        return None
    parts: list[str] = []
    seen_load_id = False
    for literal, name, _spec, _conversion in string.Formatter().parse(layout.template):
        parts.append(re.escape(literal))
        if name is None:
            continue
        if name == "table_name":
            parts.append(re.escape(table_name))
        elif name == "schema_name":
            parts.append(re.escape(schema_name))
        elif name == "load_id" and not seen_load_id:
            parts.append(r"(?P<load_id>\d+(?:\.\d+)?)")
            seen_load_id = True
        elif name == "load_id":
            parts.append(r"(?P=load_id)")
        else:
            parts.append(r"[^/]*?")
    if "ext" not in layout.placeholders:
        parts.append(r"\.[^/]+")
    return re.compile("".join(parts))


def check_table_name(table_name: str) -> None:
    """Reject a table name that cannot be one segment of an object key."""
    if not _SAFE_NAME.match(table_name) or table_name in (".", ".."):
        raise LayoutError(f"table name {table_name!r} cannot be used in an object key")


def check_table_prefix(prefix: str, *, table_name: str) -> None:
    """Reject a table whose files would mix with dlt's bookkeeping objects at the dataset root.

    Replacing such a table would delete ``_dlt_loads`` entries, so it is refused up front.
    """
    for name in BOOKKEEPING_NAMES:
        reserved = name if name == "init" else name + "/"
        # The `init` marker is one object, not a folder: only a prefix above it can reach it.
        inside = name != "init" and prefix.startswith(reserved)
        if reserved.startswith(prefix) or inside:
            raise LayoutError(
                f"table {table_name!r} with this layout would write under {prefix!r}, which "
                f"collides with dlt's bookkeeping ({', '.join(BOOKKEEPING_NAMES)}) at the "
                "dataset root; rename the table or change the layout"
            )
