"""Create objects through the API client with plain JSON in and out.

The client's generated `create_*` methods validate a dict body into its model classes and
serialize them back (pydantic's `validate_call`, then `sanitize_for_serialization`): for a
Job that was a quarter of the operator's CPU while a slot started 1,000 runs. The request
goes through the same `ApiClient` (its host, TLS settings, credentials and connection pool)
and fails with the same `ApiException`.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s


def create(client: k8s.ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` to the collection at `path` (`/api/v1/namespaces/x/events`); the reply."""
    request = client.param_serialize(
        "POST",
        path,
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    reply = client.call_api(*request)
    # Read to the end, also on failure: only then does the connection go back to the pool.
    data = reply.read()
    if not 200 <= reply.status <= 299:
        raise k8s.ApiException.from_response(http_resp=reply, body=None, data=None)
    return json.loads(data)
