"""Client side of the platform's S3-compatible server."""

from __future__ import annotations

import base64
import json
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
from botocore.config import Config

from tests.platform.processes import ManagedProcess, free_port
from tests.platform.s3server import CONTROL_PATH, OBJECTS_PATH


class Faults:
    """Fault rules of a running server (see `tests.platform.s3server`)."""

    def __init__(self, endpoint_url: str) -> None:
        self._url = endpoint_url + CONTROL_PATH

    def _call(self, method: str, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self._url, data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def add(
        self,
        action: str = "fail",
        *,
        method: str | None = None,
        path_regex: str = "",
        status: int = 500,
        code: str | None = None,
        delay_s: float = 1.0,
        times: int | None = 1,
        skip: int = 0,
    ) -> None:
        """Fail ("fail"), drop the connection of ("refuse") or delay ("delay") matching requests.

        `path_regex` is searched in `/bucket/key?query`; `times=None` applies the rule forever;
        the first `skip` matching requests pass.
        """
        if action not in ("fail", "refuse", "delay"):
            raise ValueError(f"unknown fault action {action!r}")
        self._call(
            "POST",
            {
                "action": action,
                "method": method,
                "path_regex": path_regex,
                "status": status,
                "code": code,
                "delay_s": delay_s,
                "times": times,
                "skip": skip,
            },
        )

    def rules(self) -> list[dict[str, Any]]:
        """The rules in force, each with the number of requests it has `hits`."""
        return self._call("GET")

    def clear(self) -> None:
        self._call("DELETE")


class S3Server:
    """A moto S3 server on a free port, reached over real HTTP with SigV4.

    On loopback by default; for Pods on the node, at the node's IP (`host`), the one address
    both this machine and the Pods reach (there is no cluster DNS or Service for it).
    """

    access_key_id = "kingest-test-key"
    secret_access_key = "kingest-test-secret"
    region = "us-east-1"

    def __init__(self, log_dir: Path, host: str = "127.0.0.1") -> None:
        self.port = free_port(host)
        self.endpoint_url = f"http://{host}:{self.port}"
        self.process = ManagedProcess(
            f"s3-{host}",
            [
                sys.executable,
                "-m",
                "tests.platform.s3server",
                "--host",
                host,
                "--port",
                str(self.port),
            ],
            log_dir,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.faults = Faults(self.endpoint_url)
        self.process.wait_until(
            lambda: isinstance(self.faults.rules(), list), timeout=30, what="S3 server answering"
        )

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
        )

    def uri(self, **params: str) -> str:
        """An ingestr S3 URI with this server's credentials and endpoint, plus `params`."""
        query = {
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "endpoint_url": self.endpoint_url,
            **params,
        }
        return "s3://?" + urlencode(query, safe="/:{}")

    def put_objects(self, bucket: str, objects: Mapping[str, bytes]) -> None:
        """Store many objects in one request, bypassing per-object HTTP (benchmark setup).

        They are ordinary objects of the server (ETag, size, last-modified as for a PUT).
        """
        body = json.dumps(
            {
                "bucket": bucket,
                "objects": {k: base64.b64encode(v).decode("ascii") for k, v in objects.items()},
            }
        ).encode()
        request = urllib.request.Request(self.endpoint_url + OBJECTS_PATH, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()

    def env(self) -> dict[str, str]:
        """Environment variables pointing AWS SDKs' default chain at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def stop(self) -> None:
        self.process.stop()
