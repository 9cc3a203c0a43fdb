"""The errors a run can end with: each has a CamelCase reason and a process exit code.

Every failure a user can act on is one of these classes; anything else is an internal error
(exit 1). Messages name the URI parameter, file, line or column at fault, never a secret value
(:func:`redact` is the last line of defence, applied to everything the runner prints).
"""

from __future__ import annotations

from collections.abc import Iterable


class KingestError(Exception):
    """A failure with a user-facing message, a CamelCase ``reason`` and an ``exit_code``."""

    reason = "InternalError"
    exit_code = 1

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class UsageError(KingestError):
    """A flag or its environment variable is missing, malformed or contradicts another."""

    reason = "UsageError"
    exit_code = 2


class InvalidUri(UsageError):
    """A source or destination URI cannot be understood (scheme, parameter, value)."""

    reason = "InvalidUri"


class NoFilesMatched(KingestError):
    """The source glob matched no object (ingestr 0.14 exits 0 here, loading nothing)."""

    reason = "NoFilesMatched"
    exit_code = 3


class BucketNotFound(KingestError):
    """The bucket named in ``--source-table`` / ``--dest-table`` does not exist."""

    reason = "BucketNotFound"
    exit_code = 4


class AccessDenied(KingestError):
    """Credentials are missing, wrong, expired or lack permission."""

    reason = "AccessDenied"
    exit_code = 5


class DataError(KingestError):
    """Source data cannot be read or converted; the message names file, line/row, column."""

    reason = "DataError"
    exit_code = 6


class SchemaContractViolation(DataError):
    """``--schema-contract freeze``: the source has a column, or a column type, the destination
    table does not; nothing was written."""

    reason = "SchemaContractViolation"


class DestinationError(KingestError):
    """The destination refused the load (locked file, incompatible table, I/O error)."""

    reason = "DestinationError"
    exit_code = 7


class SourceUnavailable(KingestError):
    """The source store could not be reached or failed while reading (refused connection,
    DNS, timeouts, 5xx after retries): often transient, so worth retrying, unlike 2-7."""

    reason = "SourceUnavailable"
    exit_code = 8


EXIT_CODES: dict[str, int] = {
    "UsageError": 2,
    "InvalidUri": 2,
    "NoFilesMatched": 3,
    "BucketNotFound": 4,
    "AccessDenied": 5,
    "DataError": 6,
    "SchemaContractViolation": 6,
    "DestinationError": 7,
    "SourceUnavailable": 8,
}
"""Exit code per reason, for errors raised by modules that carry only a ``reason`` word."""


def exit_code_for(reason: str) -> int:
    """The process exit code of a result ``reason`` (1 for anything unknown)."""
    return EXIT_CODES.get(reason, 1)


REDACTED = "***"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (longest first)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
