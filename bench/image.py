"""Benchmark: the kingest image's size and its start-up time, container start to first S3 request.

    .venv/bin/python bench/image.py [--runs 5]

- Size: the image podman built from the Dockerfile (`scripts/image.sh`), unpacked (as
  `docker images` shows it) and gzip-compressed (about what a registry stores and a node
  pulls), next to its base image alone. Budget: < 400 MB unpacked.
- Start-up: wall time from launching the container (podman + runc, as on the node with
  containerd + runc) to the first request arriving at an S3 endpoint, for a real
  `kingest ingest` S3 -> DuckDB command line, run as the chart runs it (UID 65532, read-only
  root, no capabilities). Baseline, measured in the same rounds: the same container running
  a bare `python -c` that makes one request to the same endpoint, i.e. the floor of runtime
  start plus interpreter start. Budget: < 2 s.

Results also go to `bench/results/image.json`.
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BASE_IMAGE = "localhost/kingest-base:bookworm-python3.11"
SIZE_BUDGET_MB = 400
START_BUDGET_S = 2.0
RESTRICTED = [
    *("--network", "host", "--user", "65532:65532", "--read-only", "--cap-drop", "ALL"),
    *("--tmpfs", "/tmp", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"),
]


class FirstRequest(http.server.BaseHTTPRequestHandler):
    """Notes when the first request arrives, then answers 503 (the run need not go on)."""

    arrived: float | None = None

    def _answer(self) -> None:
        if FirstRequest.arrived is None:
            FirstRequest.arrived = time.monotonic()
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_HEAD = do_POST = _answer

    def log_message(self, *_: object) -> None:
        pass


def image_ref() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "image.sh")], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def unpacked_mb(image: str) -> float:
    size = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Size}}", image],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(size.stdout) / 1e6


def compressed_mb(image: str) -> float:
    """Bytes of `podman save` through gzip -6: every layer, compressed."""
    saved = subprocess.Popen(["podman", "save", image], stdout=subprocess.PIPE)
    assert saved.stdout is not None

    class Counter:
        size = 0

        def write(self, data: bytes) -> int:
            self.size += len(data)
            return len(data)

    counter = Counter()
    with gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6) as zipped:  # type: ignore[arg-type]
        while chunk := saved.stdout.read(1 << 20):
            zipped.write(chunk)
    saved.wait()
    return counter.size / 1e6


def time_to_first_request(image: str, argv: list[str], port: int) -> float:
    FirstRequest.arrived = None
    started = time.monotonic()
    run = subprocess.Popen(
        ["podman", "--runtime", "runc", "run", "--rm", *RESTRICTED, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = started + 60
    while FirstRequest.arrived is None and time.monotonic() < deadline:
        time.sleep(0.005)
    run.wait(timeout=120)
    if FirstRequest.arrived is None:
        raise RuntimeError(f"no request within 60 s from {argv}")
    return FirstRequest.arrived - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="start-up runs of each (default 5)")
    args = parser.parse_args()

    image = image_ref()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FirstRequest)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{port}"
    kingest = [
        image,
        "ingest",
        "--source-uri",
        f"s3://?endpoint_url={endpoint}&access_key_id=bench&secret_access_key=bench",
        "--source-table",
        "bench/events/*.csv",
        "--dest-uri",
        "duckdb:////tmp/bench.duckdb",
        "--dest-table",
        "raw.events",
    ]
    bare = ["--entrypoint", "python", image, "-c"]
    bare.append(f"import urllib.request as u\ntry: u.urlopen({endpoint!r})\nexcept Exception: pass")

    times: dict[str, list[float]] = {"kingest ingest": [], "bare python": []}
    time_to_first_request(image, bare, port)  # warm the page cache for both
    for _ in range(args.runs):
        times["bare python"].append(time_to_first_request(image, bare, port))
        times["kingest ingest"].append(time_to_first_request(image, kingest, port))
    server.shutdown()

    size = unpacked_mb(image)
    result = {
        "image": image,
        "unpacked_mb": round(size, 1),
        "compressed_mb": round(compressed_mb(image), 1),
        "base_unpacked_mb": round(unpacked_mb(BASE_IMAGE), 1),
        "size_budget_mb": SIZE_BUDGET_MB,
        "start_to_first_request_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "start_runs_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "start_budget_s": START_BUDGET_S,
    }
    start = result["start_to_first_request_s"]
    result["start_ratio_to_bare_python"] = round(start["kingest ingest"] / start["bare python"], 2)
    print(
        f"image {image}: {result['unpacked_mb']} MB unpacked (budget {SIZE_BUDGET_MB}; base "
        f"{result['base_unpacked_mb']} MB), {result['compressed_mb']} MB compressed\n"
        f"container start -> first S3 request: kingest ingest {start['kingest ingest']:.2f} s "
        f"(budget {START_BUDGET_S} s), bare python {start['bare python']:.2f} s, "
        f"ratio {result['start_ratio_to_bare_python']}x (medians of {args.runs})"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "image.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
