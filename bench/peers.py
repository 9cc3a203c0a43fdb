"""What the benchmarks share: ingestr peers in their own virtualenvs, and measured processes.

Peers are installed from PyPI once into ``bench/results/peers/ingestr-<version>``:

- ingestr 1.1.22, the last wheel that bundles ingestr's Go binary. Offline it cannot download
  its DuckDB ADBC driver, so it is given a driver manifest (``ADBC_DRIVER_PATH``) pointing at
  the DuckDB library the ``duckdb`` Python wheel ships (it exports ``duckdb_adbc_init``;
  libpython is preloaded because that library expects it);
- ingestr 0.14.155, the last release on dlt (the one the seed documents).

Every contender runs as its own process; its wall time and the peak RSS of its whole process
tree (sampled every 10 ms) are what a benchmark compares.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PEERS = RESULTS / "peers"
PEER_VERSIONS = ("1.1.22", "0.14.155")
NATIVE = RESULTS / "native"
# DuckDB reading S3 with its own httpfs extension is the reference for "as fast as it gets".
# PyPI's duckdb-extension-httpfs ships the extension for one DuckDB version per release and
# has none for this project's DuckDB 2.0: the newest pair it has runs in a venv of its own.
NATIVE_DUCKDB = "1.5.5"

# ingestr and dlt phone home by default: a benchmark must only talk to the loopback S3 server.
QUIET_ENV = {
    "INGESTR_DISABLE_TELEMETRY": "true",
    "DISABLE_TELEMETRY": "true",
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "DO_NOT_TRACK": "1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass(frozen=True)
class Measured:
    """One finished (or stopped) process: wall seconds, peak RSS of its tree in bytes, exit
    code (None when it was stopped at the timeout) and the tail of its output."""

    wall_s: float
    peak_rss: int
    code: int | None
    output: str


def run_measured(
    argv: list[str], env: dict[str, str], cwd: Path, timeout_s: float | None = None
) -> Measured:
    """Run ``argv`` to completion (or until ``timeout_s``), sampling its tree's memory.

    Output goes to a file, not a pipe: nobody reads a pipe while the process runs, and a
    chatty process would block on a full one.
    """
    with tempfile.TemporaryFile() as log:
        started = time.monotonic()
        proc = psutil.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        peak = 0
        timed_out = False
        while proc.poll() is None:
            try:
                tree = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                for child in [*proc.children(recursive=True), proc]:
                    child.kill()
                proc.wait()
                timed_out = True
                break
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        log.seek(max(0, log.seek(0, os.SEEK_END) - 2000))
        output = log.read().decode(errors="replace")
    return Measured(elapsed, peak, None if timed_out else proc.returncode, output)


def ensure_peer(version: str) -> tuple[Path | None, str | None]:
    """The ingestr executable of ``version`` in its own venv (installed once), or the reason
    it cannot be had."""
    venv = PEERS / f"ingestr-{version}"
    problem = _venv_with(venv, [f"ingestr=={version}"])
    return (None, problem) if problem else (venv / "bin" / "ingestr", None)


def ensure_native() -> tuple[Path | None, str | None]:
    """The python of a venv with DuckDB ``NATIVE_DUCKDB`` and its httpfs extension from PyPI
    (installed once), or the reason it cannot be had."""
    venv = NATIVE / f"duckdb-{NATIVE_DUCKDB}"
    problem = _venv_with(
        venv, [f"duckdb=={NATIVE_DUCKDB}", f"duckdb-extension-httpfs=={NATIVE_DUCKDB}"]
    )
    return (None, problem) if problem else (venv / "bin" / "python", None)


def _venv_with(venv: Path, requirements: list[str]) -> str | None:
    """Make ``venv`` with ``requirements`` installed, unless it exists; the reason if not."""
    if (venv / "bin" / "python").exists():
        return None
    venv.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", *requirements],
            check=True,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        shutil.rmtree(venv, ignore_errors=True)
        return f"pip install {' '.join(requirements)} failed: {detail.strip()[-300:]}"
    return None


# Run by the venv's python: DuckDB loads httpfs from the wheel's file (its own INSTALL would
# download it) and reads ``s3://`` itself.
NATIVE_PRELUDE = """
import pathlib, duckdb, duckdb_extension_httpfs
def native_connect(db, endpoint, key, secret):
    ext = next(pathlib.Path(duckdb_extension_httpfs.__file__).parent.glob(
        "extensions/*/httpfs.duckdb_extension"))
    con = duckdb.connect(db)
    con.execute(f"LOAD '{ext}'")
    scheme, host = endpoint.split("://")
    use_ssl = "true" if scheme == "https" else "false"
    con.execute(f"CREATE SECRET (TYPE s3, KEY_ID '{key}', SECRET '{secret}', "
                f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL {use_ssl}, REGION 'us-east-1')")
    return con
"""


def adbc_manifest(folder: Path) -> Path:
    """A driver manifest in ``folder`` making the duckdb wheel's library ingestr 1.x's DuckDB
    ADBC driver."""
    import _duckdb  # the compiled module of the duckdb wheel
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "duckdb.toml").write_text(
        "manifest_version = 1\n"
        'name = "DuckDB"\n'
        f'version = "{duckdb.__version__}"\n\n'
        "[Driver]\n"
        'entrypoint = "duckdb_adbc_init"\n'
        f'shared = "{_duckdb.__file__}"\n'
    )
    return folder


def libpython() -> str | None:
    """This interpreter's shared libpython, if it has one."""
    name = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    libdir = sysconfig.get_config_var("LIBDIR")
    candidate = Path(libdir or "") / (name or "")
    return str(candidate) if name and candidate.is_file() else None


def peer_env(version: str, work: Path) -> dict[str, str]:
    """What ingestr ``version`` needs in its environment to run here, offline."""
    if not version.startswith("1."):
        return {}
    env = {"ADBC_DRIVER_PATH": str(adbc_manifest(work / "adbc"))}
    if lib := libpython():
        env["LD_PRELOAD"] = lib
    return env


def base_env(home: Path) -> dict[str, str]:
    """A minimal environment for a contender: PATH, a private HOME, telemetry off."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), **QUIET_ENV}
