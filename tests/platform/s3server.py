"""A moto S3 server with a fault-injection layer in front of it, run as its own process.

    python -m tests.platform.s3server --port PORT

Faults are rules posted as JSON to `/_kingest/faults`; each matches requests by method and a
regular expression over `path?query`, and either fails them with an S3 error document, refuses
them (the connection is closed without a response) or delays them. Rules let the first `skip`
matching requests through, then fire `times` times (null: always) and count their hits,
which `GET /_kingest/faults` returns.

`POST /_kingest/objects` stores many objects in one request, straight into moto's backend
(benchmark setup: 100,000 PUTs over HTTP take a quarter of an hour on a loaded machine). The
objects are ordinary moto objects: listing and reading them go over HTTP like any other.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import socket
import threading
import time
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.s3.models import s3_backends
from moto.server import MotoRequestHandler
from werkzeug.serving import run_simple

CONTROL_PATH = "/_kingest/faults"
OBJECTS_PATH = "/_kingest/objects"

_S3_ERROR_CODES = {403: "AccessDenied", 404: "NoSuchKey", 500: "InternalError", 503: "SlowDown"}


class FaultInjector:
    """WSGI middleware that applies fault rules before handing requests to moto."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.rules: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == CONTROL_PATH:
            return self._control(environ, start_response)
        if environ.get("PATH_INFO") == OBJECTS_PATH:
            return _store_objects(environ, start_response)
        rule = self._match(environ)
        if rule is None:
            return self.app(environ, start_response)
        action = rule["action"]
        if action == "delay":
            time.sleep(rule.get("delay_s", 1.0))
            return self.app(environ, start_response)
        if action == "refuse":
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            start_response("500 Internal Server Error", [("Content-Length", "0")])
            return [b""]
        status = int(rule.get("status", 500))
        code = rule.get("code") or _S3_ERROR_CODES.get(status, "InternalError")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>injected fault</Message>"
            f"<Resource>{environ.get('PATH_INFO', '')}</Resource></Error>"
        ).encode()
        # The request body is drained so the client sees the error rather than a reset; a
        # request without a body is not read at all (reading would wait for the next one).
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)
        start_response(
            f"{status} {code}",
            [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
        )
        # A response to HEAD has headers only: a body would be read as the start of the next
        # response on the same keep-alive connection.
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def _match(self, environ: dict[str, Any]) -> dict[str, Any] | None:
        target = environ.get("PATH_INFO", "")
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
        with self.lock:
            for rule in self.rules:
                if rule.get("method") and rule["method"] != environ["REQUEST_METHOD"]:
                    continue
                if not re.search(rule.get("path_regex") or "", target):
                    continue
                if rule.get("times") is not None and rule["hits"] >= rule["times"]:
                    continue
                rule["seen"] = rule.get("seen", 0) + 1
                if rule["seen"] <= (rule.get("skip") or 0):
                    continue
                rule["hits"] += 1
                return dict(rule)
        return None

    def _control(self, environ: dict[str, Any], start_response: Any) -> Any:
        method = environ["REQUEST_METHOD"]
        with self.lock:
            if method == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                rule = json.loads(environ["wsgi.input"].read(length))
                rule["hits"] = 0
                self.rules.append(rule)
            elif method == "DELETE":
                self.rules.clear()
            body = json.dumps(self.rules).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]


def _store_objects(environ: dict[str, Any], start_response: Any) -> Any:
    """Store ``{"bucket": ..., "objects": {key: base64 body}}`` (the bucket must exist)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    request = json.loads(environ["wsgi.input"].read(length))
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key, body in request["objects"].items():
        backend.put_object(request["bucket"], key, base64.b64decode(body))
    answer = json.dumps({"stored": len(request["objects"])}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    )
    return [answer]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = FaultInjector(DomainDispatcherApplication(create_backend_app))
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
