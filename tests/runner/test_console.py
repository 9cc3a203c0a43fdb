"""The ``kingest`` console script (`kingest.runner.console`): what a run prints, writes and
commits survives its fast exit, garbage collection is paused only while it starts, and Arrow
allocates with jemalloc unless told otherwise."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from kingest.runner import console
from tests.platform.s3 import S3Server

KINGEST = Path(sys.executable).parent / "kingest"

# Runs the console script with probes on two steps of the run: the step before the source
# opens (startup) and the destination's load (the data flowing).
PROBE = """
import gc, os, sys
from kingest.runner import pipeline
from kingest.runner.duckdb_destination import DuckDBDestination

prepare, load = pipeline.prepare, DuckDBDestination.load

def probed_prepare(*args, **kwargs):
    print(f"probe startup gc={gc.isenabled()}", file=sys.stderr)
    return prepare(*args, **kwargs)

def probed_load(self, *args, **kwargs):
    print(f"probe load gc={gc.isenabled()} frozen={gc.get_freeze_count()}", file=sys.stderr)
    print(f"probe pool={os.environ.get('ARROW_DEFAULT_MEMORY_POOL')}", file=sys.stderr)
    return load(self, *args, **kwargs)

pipeline.prepare, DuckDBDestination.load = probed_prepare, probed_load
sys.argv = ["kingest", "ingest", *sys.argv[1:]]
from kingest.runner.console import main
main()
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KINGEST_"))}
    return {**env, **extra}


def _env_naming_pool(**extra: str) -> dict[str, str]:
    """`_env`, without ``ARROW_DEFAULT_MEMORY_POOL`` unless ``extra`` names a pool."""
    env = {k: v for k, v in _env().items() if k != console.ARROW_POOL_VARIABLE}
    return {**env, **extra}


def _argv(s3: S3Server, bucket: str, db: Path) -> list[str]:
    return [
        "--source-uri", s3.uri(), "--source-table", f"{bucket}/in/*.csv",
        "--dest-uri", f"duckdb:///{db}", "--dest-table", "raw.t",
    ]  # fmt: skip


def _put_csv(s3: S3Server, bucket: str, rows: int) -> None:
    body = "id,name\n" + "".join(f"{i},n{i}\n" for i in range(rows))
    s3.client().put_object(Bucket=bucket, Key="in/a.csv", Body=body.encode())


def test_a_run_through_the_console_script_prints_writes_and_commits_everything(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    _put_csv(s3_server, bucket, 1234)
    db, result_file = tmp_path / "out.duckdb", tmp_path / "result.json"
    done = subprocess.run(
        [str(KINGEST), "ingest", *_argv(s3_server, bucket, db)],
        capture_output=True, text=True, timeout=120,
        env=_env(KINGEST_RESULT_FILE=str(result_file)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary, last = done.stdout.strip().splitlines()[-2:]
    assert "1,234 rows" in summary
    assert json.loads(last)["rows"] == 1234
    assert json.loads(result_file.read_text()) == json.loads(last)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.t").fetchone() == (1234,)


def test_a_failed_run_through_the_console_script_keeps_its_exit_code_and_message(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    db = tmp_path / "out.duckdb"
    done = subprocess.run(
        [str(KINGEST), "ingest", *_argv(s3_server, bucket, db)],
        capture_output=True, text=True, timeout=120, env=_env(),
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "no object matches" in done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["reason"] == "NoFilesMatched"
    assert not db.exists()


def test_garbage_collection_is_paused_while_starting_and_resumes_for_the_data(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    _put_csv(s3_server, bucket, 10)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *_argv(s3_server, bucket, tmp_path / "out.duckdb")],
        capture_output=True, text=True, timeout=120, env=_env(), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    probes = [line for line in done.stderr.splitlines() if line.startswith("probe ")]
    assert probes[0] == "probe startup gc=False"
    assert probes[1].startswith("probe load gc=True frozen=")
    assert int(probes[1].rpartition("=")[2]) > 10_000


# Sets the pool the way the console script does (or not), then reads a Parquet file through a
# dataset scan, as a run does, and prints the pools the scan's buffers came from.
POOL_PROBE = """
import sys
from kingest.runner import console
assert "pyarrow" not in sys.modules, "the console script loads pyarrow before its settings"
if sys.argv[1] == "console":
    console.arrow_allocates_with_jemalloc()
import pyarrow as pa, pyarrow.dataset as ds, pyarrow.parquet as pq
if sys.argv[1] == "set_memory_pool":
    pa.set_memory_pool(pa.jemalloc_memory_pool())
pq.write_table(pa.table({"n": range(200_000), "s": [str(i) for i in range(200_000)]}), "t.parquet")
rows = sum(batch.num_rows for batch in ds.dataset("t.parquet").to_batches())
pools = [pa.mimalloc_memory_pool(), pa.jemalloc_memory_pool(), pa.system_memory_pool()]
used = [pool.backend_name for pool in pools if pool.max_memory()]
print(rows, pa.default_memory_pool().backend_name, *used)
"""


def _pools(how: str, tmp_path: Path, **env: str) -> list[str]:
    """What POOL_PROBE prints, in an environment without ``ARROW_DEFAULT_MEMORY_POOL`` unless
    ``env`` sets it."""
    done = subprocess.run(
        [sys.executable, "-c", POOL_PROBE, how],
        capture_output=True, text=True, timeout=120, env=_env_naming_pool(**env), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_run_through_the_console_script_names_jemalloc_for_arrow(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    _put_csv(s3_server, bucket, 10)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *_argv(s3_server, bucket, tmp_path / "out.duckdb")],
        capture_output=True, text=True, timeout=120, env=_env_naming_pool(), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "probe pool=jemalloc" in done.stderr.splitlines()


def test_arrow_allocates_only_with_jemalloc_once_the_console_setting_is_made(
    tmp_path: Path,
) -> None:
    assert _pools("console", tmp_path) == ["200000", "jemalloc", "jemalloc"]
    # Why the console script sets it before pyarrow loads: pyarrow's own setting leaves the
    # dataset scan's buffers with Arrow's default, mimalloc.
    assert _pools("set_memory_pool", tmp_path) == ["200000", "jemalloc", "mimalloc", "jemalloc"]


def test_a_memory_pool_chosen_by_the_user_is_kept(tmp_path: Path) -> None:
    chosen = {console.ARROW_POOL_VARIABLE: "system"}
    assert _pools("console", tmp_path, **chosen) == ["200000", "system", "system"]


def test_a_run_in_process_keeps_the_pool_named_in_the_environment(tmp_path: Path) -> None:
    def pool(prelude: str = "", **env: str) -> str:
        """pyarrow's pool after the pipeline chose it, in a fresh interpreter."""
        script = (
            f"{prelude}import pyarrow as pa\n"
            "from kingest.runner import pipeline\n"
            "pipeline._use_returning_memory_pool()\n"
            "print(pa.default_memory_pool().backend_name)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True, text=True, timeout=120, env=_env_naming_pool(**env), cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert pool() == "jemalloc"
    assert pool(**{console.ARROW_POOL_VARIABLE: "system"}) == "system"
    assert pool(**{console.ARROW_POOL_VARIABLE: "mimalloc"}) == "mimalloc"
    # Named after pyarrow loaded (too late for Arrow's own default): pyarrow's pool follows.
    late = "import os, pyarrow\nos.environ['ARROW_DEFAULT_MEMORY_POOL'] = 'system'\n"
    assert pool(prelude=late) == "system"


def test_resume_gc_leaves_collection_alone_unless_the_console_script_paused_it() -> None:
    gc.disable()
    try:
        console.resume_gc()
        assert not gc.isenabled()
    finally:
        gc.enable()
