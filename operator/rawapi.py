"""The operator's API calls as coroutines on its event loop, plain JSON in and out.

The kubernetes client's generated methods validate a dict body into its model classes and
serialize them back (pydantic's `validate_call`, then `sanitize_for_serialization`): for a Job
that was a quarter of the operator's CPU while a slot started 1,000 runs. And the client
blocks, so each call in flight held a thread. `AsyncApi` sends the body, already plain JSON
data, through aiohttp (kopf's own HTTP client) on the event loop, with the client's
`Configuration` (host, TLS, credentials, a rotating token's refresh), and fails with the
client's `ApiException`. The Jobs' and Pods' watches read their streams the same way
(`watch`): only the Lease's calls and the readiness probe's version check still block, on
`asyncio.to_thread`.

Creating 1,000 Jobs (a slot of `bench/schedule_scale.py`) on this project's 2-core test
machine cost the client 0.27 ms of CPU per Job this way, against 0.77 ms from 48 threads
through the blocking client's REST layer, and took 0.81-0.90 s against 1.13-1.31 s (3
alternating rounds on the same API server).

JSON is encoded and parsed by pydantic's core (Rust; pydantic is a dependency anyway): for a
3 KB Job, 5.7 us to encode against the standard library's 23.8 us, 10.4 us to parse against
20.8 us, and each slot of 1,000 runs parses a few thousand watch events.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import pydantic_core
from kubernetes import client as k8s

JSON_PATCH = "application/json-patch+json"
# How long the credentials read from the configuration are used before it is asked again. Its
# refresh hook re-runs the whole kubeconfig loading (a few hundred microseconds, ~4 % of the
# operator's samples while a slot started 1,000 runs); a token refused before then is read
# again at once (see `_send`).
AUTH_REUSE_S = 10.0
# A watch's grace: to connect, and beyond its own timeout for the stream to end.
_WATCH_GRACE_S = 30


class ApiUnreachable(ConnectionError):
    """No reply from the API server: which call, which address, and what went wrong (no
    credentials: they travel in headers, never in the URL)."""


class AsyncApi:
    """`create`, `patch`, `get` and `delete` as coroutines, at most `connections` at once.

    Built anywhere, used on one event loop (its connections belong to the loop of its first
    call); `close()` on that loop.
    """

    def __init__(
        self, configuration: k8s.Configuration, connections: int, timeout_s: float = 60
    ) -> None:
        self._configuration = configuration
        self._connections, self._timeout_s = connections, timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._auth: dict[str, str] = {}
        self._auth_read_at: float | None = None
        # What every request takes from the configuration, but its token (see `_credentials`).
        self._host = configuration.host.rstrip("/")
        self._request_options = {
            "allow_redirects": False,
            "proxy": getattr(configuration, "proxy", None),
            "server_hostname": getattr(configuration, "tls_server_name", None) or None,
        }

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` to the collection at `path`; the stored object."""
        return await self._send("POST", path, body, "application/json")

    async def patch(self, path: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply the JSON patch `operations` to the object (or subresource) at `path`."""
        return await self._send("PATCH", path, operations, JSON_PATCH)

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """The object or list at `path` (`params`: the query, such as a label selector)."""
        return await self._send("GET", path, None, None, params)

    async def watch(
        self, path: str, params: dict[str, str], timeout_s: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The watch events of the collection at `path`, parsed, until the API server ends
        the stream (it does after `timeout_s`; a stream silent `_WATCH_GRACE_S` longer is a
        `ApiUnreachable`). A 410 Gone or another refusal mid-stream arrives as an event of
        type ERROR, as the API server sends it."""
        session = self._opened()
        url = self._host + path
        query = {**params, "watch": "1", "timeoutSeconds": str(int(timeout_s))}
        auth = self._credentials()
        grace = _WATCH_GRACE_S
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=grace, sock_read=timeout_s + grace)
        try:
            async with session.request(
                "GET",
                url,
                params=query,
                headers={"Accept": "application/json"} | auth,
                timeout=timeout,
                **self._request_options,
            ) as reply:
                if not 200 <= reply.status <= 299:
                    if reply.status == 401:
                        self._credentials(again=True)  # for the next try
                    raise _refused(reply.status, reply.reason, await reply.read())
                # One event per line; a read may end mid-line or hold many lines.
                pending = bytearray()
                async for chunk in reply.content.iter_any():
                    pending += chunk
                    start = 0
                    while (end := pending.find(b"\n", start)) >= 0:
                        if end > start:
                            yield pydantic_core.from_json(pending[start:end])
                        start = end + 1
                    del pending[:start]
        except TimeoutError:
            raise ApiUnreachable(
                f"GET {url}: no connection within {grace} s, or no data within "
                f"{timeout_s + grace:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise ApiUnreachable(f"GET {url}: {exc}") from None

    async def delete(self, path: str, propagation: str) -> dict[str, Any]:
        """Delete the object at `path` (`propagation`: Foreground, Background or Orphan); the
        reply: the object while it waits for its dependents, or a `Status` once gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        return await self._send("DELETE", path, body, "application/json")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _opened(self) -> aiohttp.ClientSession:
        """The session, opened on the first call (its connections belong to that loop)."""
        if self._session is None:
            self._session = self._open()
        return self._session

    def _open(self) -> aiohttp.ClientSession:
        config = self._configuration
        tls: ssl.SSLContext | bool = False
        if config.verify_ssl:
            tls = ssl.create_default_context(
                cafile=config.ssl_ca_cert, cadata=getattr(config, "ca_cert_data", None)
            )
            if config.assert_hostname is False:
                tls.check_hostname = False
        if config.cert_file:
            if tls is False:
                tls = ssl.create_default_context()
                tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
            tls.load_cert_chain(config.cert_file, config.key_file)
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls, limit=self._connections),
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            # The API server's JSON as it is: no cookies kept, no redirects to follow.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def _credentials(self, again: bool = False) -> dict[str, str]:
        """The authorization headers: read through the configuration (and its refresh hook,
        which re-reads a rotating in-cluster token) at most every `AUTH_REUSE_S` seconds, or
        `again` now."""
        moment = time.monotonic()
        if again or self._auth_read_at is None or moment - self._auth_read_at > AUTH_REUSE_S:
            settings = self._configuration.auth_settings().values()
            self._auth = {auth["key"]: auth["value"] for auth in settings}
            self._auth_read_at = moment
        return self._auth

    async def _send(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str | None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        payload = pydantic_core.to_json(body) if body is not None else None
        auth = self._credentials()
        status, reason, data = await self._request(method, path, params, payload, headers | auth)
        if status == 401 and (renewed := self._credentials(again=True)) != auth:
            # The token rotated since it was read: once more with the new one.
            status, reason, data = await self._request(
                method, path, params, payload, headers | renewed
            )
        if not 200 <= status <= 299:
            raise _refused(status, reason, data)
        return pydantic_core.from_json(data)

    async def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        payload: bytes | None,
        headers: dict[str, str],
    ) -> tuple[int, str | None, bytes]:
        url = self._host + path
        try:
            async with self._opened().request(
                method, url, params=params, data=payload, headers=headers, **self._request_options
            ) as reply:
                return reply.status, reply.reason, await reply.read()
        except TimeoutError:
            raise ApiUnreachable(f"{method} {url}: no reply within {self._timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise ApiUnreachable(f"{method} {url}: {exc}") from None


def _refused(status: int, reason: str | None, body: bytes) -> k8s.ApiException:
    """The API server's refusal as the kubernetes client reports it."""
    return k8s.ApiException(status=status, reason=reason, body=body.decode("utf-8", "replace"))
