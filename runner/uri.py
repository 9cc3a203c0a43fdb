"""Source and destination URIs, parsed once at the edge into validated models.

ingestr puts every option in the URI's query string (``s3://?access_key_id=..&...``). The
operator adds credentials from Secrets as environment variables ``KINGEST_SOURCE_<PARAM>`` /
``KINGEST_DESTINATION_<PARAM>``; :func:`parse_uri` merges those into the query, so the rest of
the runner never sees raw strings, and never learns where a credential came from.

Errors name the parameter at fault, never its value: a URI may carry secrets.

The models are frozen dataclasses validated by hand, not pydantic models: ``kingest ingest``
is a short process, and importing pydantic and building these models' validators took
~85 ms of a 0.9 s run (bench/duckdb_to_s3.py); the validation itself is a few lines.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, unquote_plus, urlsplit

from kingest.runner.errors import InvalidUri, UsageError

Side = Literal["source", "destination"]

ENV_PREFIX: dict[Side, str] = {"source": "KINGEST_SOURCE_", "destination": "KINGEST_DESTINATION_"}

# Parameters whose values are secrets: redacted from every message the runner prints.
_SECRET_WORDS = ("secret", "token", "password", "credential", "access_key", "private_key")


def is_secret_parameter(name: str) -> bool:
    """Whether a URI query parameter holds a secret (its value must never be printed)."""
    return any(word in name.lower() for word in _SECRET_WORDS)


@dataclass(frozen=True)
class ParsedUri:
    """A URI split into scheme, location and query parameters (environment merged in).

    ``origin`` maps each parameter to where it came from (``"URI"`` or the environment
    variable's name), so errors can point at the right place.
    """

    side: Side
    scheme: str
    netloc: str
    path: str
    params: dict[str, str]
    origin: dict[str, str] = field(default_factory=dict)
    username: str | None = None
    password: str | None = None

    def secrets(self) -> list[str]:
        """The secret values this URI carries (for redaction)."""
        values = [v for k, v in self.params.items() if is_secret_parameter(k)]
        if self.password:
            values.append(self.password)
        return values

    def where(self, param: str) -> str:
        """Human description of where ``param`` was set, e.g. ``source URI parameter 'region'``."""
        origin = self.origin.get(param, "URI")
        if origin == "URI":
            return f"{self.side} URI parameter {param!r}"
        return f"{self.side} URI parameter {param!r} (from {origin})"


def query_parameters(query: str) -> list[tuple[str, str]]:
    """The ``key=value`` pairs of a URI query, decoded.

    Values are form-decoded (``+`` is a space, ``%XX`` a byte), except those of secret
    parameters: AWS secret keys and session tokens hold ``+`` and ``/``, which users paste
    as they are, and a literal space is never part of a key. So a secret is taken raw or
    percent-encoded alike: ``a+b/c`` and ``a%2Bb%2Fc`` are the same value.
    """
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        key = unquote_plus(key)
        pairs.append((key, unquote(value) if is_secret_parameter(key) else unquote_plus(value)))
    return pairs


def parse_uri(raw: str, side: Side, environ: Mapping[str, str] | None = None) -> ParsedUri:
    """Split ``raw`` and merge ``KINGEST_<SIDE>_<PARAM>`` variables from ``environ`` into its query.

    Raises :class:`InvalidUri` for a URI without scheme or with a repeated parameter, and
    :class:`UsageError` when a parameter is set both in the URI and in the environment.
    """
    environ = os.environ if environ is None else environ
    flag = "--source-uri" if side == "source" else "--dest-uri"
    if not raw or "://" not in raw:
        raise InvalidUri(f"{flag}: expected '<scheme>://...', e.g. 's3://?...' or 'duckdb:///f.db'")
    try:
        parts = urlsplit(raw)
        username, password = parts.username, parts.password
    except ValueError as exc:
        # urllib's messages quote no part of the URI, only what is wrong with it.
        raise InvalidUri(f"{flag}: malformed URI ({exc})") from None
    params: dict[str, str] = {}
    origin: dict[str, str] = {}
    for key, value in query_parameters(parts.query):
        if key in params:
            raise InvalidUri(f"{flag}: parameter {key!r} is given more than once")
        params[key] = value
        origin[key] = "URI"
    prefix = ENV_PREFIX[side]
    for name, value in sorted(environ.items()):
        if not name.startswith(prefix) or len(name) == len(prefix):
            continue
        key = name[len(prefix) :].lower()
        if key in params:
            raise UsageError(
                f"{side} URI parameter {key!r} is set both in {flag} and in {name}; set it once"
            )
        params[key] = value
        origin[key] = name
    return ParsedUri(
        side=side,
        scheme=parts.scheme.lower(),
        netloc=parts.hostname or "",
        path=unquote(parts.path),
        params=params,
        origin=origin,
        username=unquote(username) if username else None,
        password=unquote(password) if password else None,
    )


def _reject_unknown(uri: ParsedUri, known: set[str], side_only: Mapping[str, Side]) -> None:
    unknown = sorted(k for k in uri.params if k not in known)
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            hints.append(f"{uri.where(name)}{hint}")
        raise InvalidUri(
            f"unknown {uri.scheme}:// {uri.side} URI parameter(s): {'; '.join(hints)}. "
            f"Known: {', '.join(sorted(known))}"
        )
    for name, only in side_only.items():
        if name in uri.params and uri.side != only:
            raise InvalidUri(f"{uri.where(name)} applies only to an {uri.scheme} {only}")


class Secret:
    """A credential that never shows in a repr, a message or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word not in _BOOL_WORDS:
        raise ValueError("must be true or false")
    return _BOOL_WORDS[word]


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL, e.g. http://localhost:9000")
    return value.rstrip("/")


def _secret(value: Secret | str | None) -> Secret | None:
    return Secret(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class S3Uri:
    """``s3://?access_key_id=..&secret_access_key=..`` plus the optional parameters below.

    Without keys, the default AWS credential chain applies (environment, web identity / IRSA,
    instance role). ``layout`` is for destinations only; ``hive_partitioning``,
    ``include_file_path`` and ``nullstr`` for sources only. Keys given as text are kept as
    :class:`Secret`; ``endpoint_url`` and the two switches are checked on construction
    (``ValueError`` naming the field).
    """

    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    endpoint_url: str | None = None
    region: str | None = None
    layout: str | None = None
    hive_partitioning: bool = False
    include_file_path: bool = False
    nullstr: str | None = None

    def __post_init__(self) -> None:
        problems = []
        for name, check in (
            ("access_key_id", _secret),
            ("secret_access_key", _secret),
            ("session_token", _secret),
            ("endpoint_url", _http_url),
            ("hive_partitioning", _boolean),
            ("include_file_path", _boolean),
        ):
            try:
                object.__setattr__(self, name, check(getattr(self, name)))
            except ValueError as exc:
                problems.append((name, str(exc)))
        if problems:
            raise _FieldErrors(problems)

    @property
    def null_tokens(self) -> tuple[str, ...]:
        """CSV values read as NULL besides the empty field (``nullstr=NA,n/a``, as DuckDB's
        ``read_csv(nullstr=...)``); none by default."""
        if self.nullstr is None:
            return ()
        return tuple(token for token in self.nullstr.split(",") if token)

    @classmethod
    def from_parsed(cls, uri: ParsedUri) -> S3Uri:
        """Validate an ``s3://`` URI; :class:`InvalidUri` names the parameter at fault."""
        if uri.scheme != "s3":
            raise InvalidUri(f"{uri.side} URI: expected scheme s3://, got {uri.scheme}://")
        if uri.netloc or uri.path.strip("/"):
            table_flag = "--source-table" if uri.side == "source" else "--dest-table"
            raise InvalidUri(
                f"{uri.side} URI: the bucket goes in {table_flag} ('bucket/path'), not in the "
                "URI: use 's3://?access_key_id=..'"
            )
        _reject_unknown(
            uri,
            {f.name for f in fields(cls)},
            {
                "layout": "destination",
                "hive_partitioning": "source",
                "include_file_path": "source",
                "nullstr": "source",
            },
        )
        params = {k: v for k, v in uri.params.items() if v != "" or k == "layout"}
        try:
            model = cls(**params)
        except _FieldErrors as exc:
            # Name the parameter and the problem; never the value, which may be a secret.
            raise InvalidUri(
                "; ".join(f"{uri.where(name)}: {problem}" for name, problem in exc.problems)
            ) from None
        if (model.access_key_id is None) != (model.secret_access_key is None):
            given, missing = (
                ("access_key_id", "secret_access_key")
                if model.access_key_id is not None
                else ("secret_access_key", "access_key_id")
            )
            raise InvalidUri(
                f"{uri.where(given)} is set but {missing!r} is not: give both, or neither to use "
                "the default AWS credential chain"
            )
        if model.session_token is not None and model.access_key_id is None:
            raise InvalidUri(
                f"{uri.where('session_token')} needs access_key_id and secret_access_key"
            )
        return model


class _FieldErrors(ValueError):
    """What is wrong with which fields of a model, as ``(field, problem)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in problems))
        self.problems = problems


@dataclass(frozen=True)
class DuckDBUri:
    """``duckdb:///relative.duckdb`` or ``duckdb:////absolute/path.duckdb``."""

    path: Path

    @classmethod
    def from_parsed(cls, uri: ParsedUri) -> DuckDBUri:
        """Validate a ``duckdb://`` URI; relative paths are relative to the working directory."""
        if uri.scheme != "duckdb":
            raise InvalidUri(f"{uri.side} URI: expected scheme duckdb://, got {uri.scheme}://")
        _reject_unknown(uri, set(), {})
        if uri.netloc:
            raise InvalidUri(
                f"{uri.side} URI: a DuckDB URI has three slashes before a relative path "
                "(duckdb:///file.duckdb) and four before an absolute one (duckdb:////abs/f.duckdb)"
            )
        relative = uri.path[1:] if uri.path.startswith("/") else uri.path
        if not relative or relative.endswith("/"):
            raise InvalidUri(f"{uri.side} URI: no database file given, e.g. duckdb:///data.duckdb")
        return cls(path=Path(relative))
