"""Create and patch objects through the API client with plain JSON in and out.

The client's generated methods validate a dict body into its model classes and serialize them
back (pydantic's `validate_call`, then `sanitize_for_serialization`): for a Job that was a
quarter of the operator's CPU while a slot started 1,000 runs, and the generated status patch
of a custom object pays the same (and `validate_call` on every argument) per status write.
Here the body, already plain JSON data, goes to the client's REST layer as it is (no
sanitizing walk over it), through the same `ApiClient` (its host, TLS settings, credentials
and connection pool), and a failure is the same `ApiException`.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s

JSON_PATCH = "application/json-patch+json"


def create(client: k8s.ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` to the collection at `path` (`/api/v1/namespaces/x/events`); the reply."""
    return _send(client, "POST", path, body, "application/json")


def patch(client: k8s.ApiClient, path: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply the JSON patch `operations` to the object (or subresource) at `path`; the reply."""
    return _send(client, "PATCH", path, operations, JSON_PATCH)


def _send(
    client: k8s.ApiClient, method: str, path: str, body: Any, content_type: str
) -> dict[str, Any]:
    # No body for `param_serialize`: it would only walk it to sanitize what is plain JSON.
    method, url, headers, _, _ = client.param_serialize(
        method,
        path,
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    reply = client.call_api(method, url, header_params=headers, body=body)
    # Read to the end, also on failure: only then does the connection go back to the pool.
    data = reply.read()
    if not 200 <= reply.status <= 299:
        raise k8s.ApiException.from_response(http_resp=reply, body=None, data=None)
    return json.loads(data)
