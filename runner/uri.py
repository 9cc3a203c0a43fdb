"""Source and destination URIs, parsed once at the edge into validated models.

ingestr puts every option in the URI's query string (``s3://?access_key_id=..&...``). The
operator adds credentials from Secrets as environment variables ``KINGEST_SOURCE_<PARAM>`` /
``KINGEST_DESTINATION_<PARAM>``; :func:`parse_uri` merges those into the query, so the rest of
the runner never sees raw strings, and never learns where a credential came from.

Errors name the parameter at fault, never its value: a URI may carry secrets.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, unquote_plus, urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator

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


def _validation_error(uri: ParsedUri, exc: ValidationError) -> InvalidUri:
    # pydantic's messages would quote the input value, which may be a secret: use only the
    # parameter name and the kind of problem.
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        param = str(error["loc"][0]) if error["loc"] else "?"
        problems.append(f"{uri.where(param)}: {error['msg']}")
    return InvalidUri("; ".join(problems))


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class S3Uri(BaseModel):
    """``s3://?access_key_id=..&secret_access_key=..`` plus the optional parameters below.

    Without keys, the default AWS credential chain applies (environment, web identity / IRSA,
    instance role). ``layout`` is for destinations only; ``hive_partitioning``,
    ``include_file_path`` and ``nullstr`` for sources only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    endpoint_url: str | None = None
    region: str | None = None
    layout: str | None = None
    hive_partitioning: bool = False
    include_file_path: bool = False
    nullstr: str | None = None

    @property
    def null_tokens(self) -> tuple[str, ...]:
        """CSV values read as NULL besides the empty field (``nullstr=NA,n/a``, as DuckDB's
        ``read_csv(nullstr=...)``); none by default."""
        if self.nullstr is None:
            return ()
        return tuple(token for token in self.nullstr.split(",") if token)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_is_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. http://localhost:9000")
        return value.rstrip("/")

    @field_validator("hive_partitioning", "include_file_path", mode="before")
    @classmethod
    def _boolean_word(cls, value: object) -> object:
        if isinstance(value, str):
            word = value.strip().lower()
            if word not in _BOOL_WORDS:
                raise ValueError("must be true or false")
            return _BOOL_WORDS[word]
        return value

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
            set(cls.model_fields),
            {
                "layout": "destination",
                "hive_partitioning": "source",
                "include_file_path": "source",
                "nullstr": "source",
            },
        )
        params = {k: v for k, v in uri.params.items() if v != "" or k == "layout"}
        try:
            model = cls.model_validate(params)
        except ValidationError as exc:
            raise _validation_error(uri, exc) from None
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


class DuckDBUri(BaseModel):
    """``duckdb:///relative.duckdb`` or ``duckdb:////absolute/path.duckdb``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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
