"""The image's contract, checked without a Docker engine.

The Dockerfile's build stage is replayed outside Docker: its RUN commands run in a temp
folder standing for `/`, over a build context holding only what its COPY lines take (and
`.dockerignore` lets through), with the locked dependencies from a local wheelhouse. The
virtualenv this produces is what the final stage copies; it must run `kingest ingest` and
`kingest operator` the way the chart's Deployment and the operator's Jobs call them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.image.dockerfile import REPO_ROOT, Dockerfile, copy_sources, ignored, parse

LOCK = REPO_ROOT / "requirements.lock"
BUILD_LOCK = REPO_ROOT / "requirements-build.lock"
IMAGE_PATHS = ("/opt/kingest", "/opt/build", "/wheels", "/src")
WHEELHOUSE = Path.home() / ".cache" / "kingest" / "wheelhouse"


def locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """`name -> (version, hashes)` of a hash-pinned requirements file."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split()
        name, _, version = requirement.partition("==")
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=")]
        pins[canonicalize_name(name.split("[")[0])] = (version, hashes)
    return pins


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse()


def test_final_stage_is_slim_and_only_copies_the_built_virtualenv(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2, "multi-stage: build tools stay in the build stage"
    final = dockerfile.final
    assert "slim" in final.base, final.base
    assert not final.all("RUN"), "nothing is installed in the final stage"
    copies = final.all("COPY")
    assert copies and all("--from=build" in c.value for c in copies), [c.value for c in copies]
    assert [c.value.split()[-1] for c in copies] == ["/opt/kingest"]


def test_final_stage_runs_as_a_numeric_non_root_user(dockerfile: Dockerfile) -> None:
    users = dockerfile.final.all("USER")
    assert users, "the image must not run as root"
    uid, _, gid = users[-1].value.partition(":")
    assert uid.isdigit() and int(uid) != 0, "runAsNonRoot needs a numeric UID"
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_entrypoint_is_kingest_for_both_operator_and_runner(dockerfile: Dockerfile) -> None:
    entrypoints = dockerfile.final.all("ENTRYPOINT")
    assert entrypoints and entrypoints[-1].exec_form() == ["kingest"]


def test_base_image_is_pinned_to_a_python_minor_version(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        assert re.fullmatch(r"python:3\.\d+(\.\d+)?-slim-\w+(@sha256:[0-9a-f]{64})?", stage.base)


def test_lock_pins_every_dependency_of_pyproject_with_hashes() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = locked(LOCK)
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} (pyproject.toml) is missing from requirements.lock"
        version = pins[name][0]
        assert requirement.specifier.contains(version), f"{name}=={version} vs {spec}"
    for name, (version, hashes) in {**pins, **locked(BUILD_LOCK)}.items():
        assert version, f"{name} is not pinned with =="
        assert hashes, f"{name} has no --hash"


def test_build_stage_installs_with_hashes_and_binary_wheels_only(dockerfile: Dockerfile) -> None:
    installs = [
        r.value for r in dockerfile.stage("build").all("RUN") if "-r requirements" in r.value
    ]
    assert len(installs) == 2
    for command in installs:
        for flag in ("--require-hashes", "--no-deps", "--only-binary=:all:"):
            assert flag in command, f"{flag} missing in: {command}"


def test_every_copied_path_is_in_the_build_context(dockerfile: Dockerfile) -> None:
    for copy in dockerfile.stage("build").all("COPY"):
        for source in copy_sources(copy):
            assert (REPO_ROOT / source).exists(), source
            assert not ignored(source), f"{source} is excluded by .dockerignore"


def test_dockerignore_keeps_caches_and_local_state_out() -> None:
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "runner/__pycache__/x.pyc"):
        assert ignored(path), path


# --- the build stage, replayed -----------------------------------------------------------


@dataclass
class BuiltImage:
    root: Path  # stands for the image's `/`

    @property
    def venv(self) -> Path:
        return self.root / "opt" / "kingest"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a command the way the image's ENTRYPOINT and PATH would."""
        env = {
            "PATH": f"{self.venv / 'bin'}:/usr/bin:/bin",
            "HOME": str(self.root / "tmp"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        return subprocess.run(
            list(args), env=env, cwd=self.root / "tmp", capture_output=True, text=True, timeout=120
        )


def _wheelhouse() -> Path:
    """The locked wheels, downloaded once per machine (from the package index, by hash)."""
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    for lock in (LOCK, BUILD_LOCK):
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes"),
                *("--no-deps", "--only-binary=:all:", "-r", str(lock), "--dest", str(WHEELHOUSE)),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    return WHEELHOUSE


def _dockerignored(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if ignored(str((Path(folder) / n).relative_to(REPO_ROOT)))]


def _replayed(command: str, root: Path, wheelhouse: Path) -> str:
    for image_path in IMAGE_PATHS:
        command = command.replace(image_path, str(root / image_path.lstrip("/")))
    # Same commands, but the index is the local wheelhouse (the hashes still have to match).
    return command.replace(
        "--require-hashes", f"--require-hashes --no-index --find-links {wheelhouse}"
    )


@pytest.fixture(scope="module")
def built_image(dockerfile: Dockerfile, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    wheelhouse = _wheelhouse()
    root = tmp_path_factory.mktemp("image-root")
    src = root / "src"
    src.mkdir()
    (root / "tmp").mkdir()
    for copy in dockerfile.stage("build").all("COPY"):
        for source in copy_sources(copy):
            origin = REPO_ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, src / source, ignore=_dockerignored)
            else:
                shutil.copy2(origin, src / source)
    # `python` is the base image's interpreter: the one this test's venv was made from.
    base_bin = root / "usr-bin"
    base_bin.mkdir()
    (base_bin / "python").symlink_to(sys._base_executable)
    env = {
        "PATH": f"{base_bin}:/usr/bin:/bin",
        "HOME": str(root / "tmp"),
        # The machine's pip configuration (extra indexes, constraints) is not the image's.
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
    }
    for run in dockerfile.stage("build").all("RUN"):
        completed = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _replayed(run.value, root, wheelhouse)],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert completed.returncode == 0, f"RUN {run.value}\n{completed.stdout}\n{completed.stderr}"
    return BuiltImage(root)


def test_built_venv_has_every_dependency_it_declares(built_image: BuiltImage) -> None:
    # pip itself was removed from the image's venv; ask the test venv's pip about it.
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(built_image.venv / "bin" / "python"),
            "check",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_built_venv_has_no_packaging_tools(built_image: BuiltImage) -> None:
    site = next((built_image.venv / "lib").glob("python3.*/site-packages"))
    leftovers = [p.name for p in site.iterdir() if p.name.split("-")[0] in ("pip", "setuptools")]
    assert not leftovers
    assert not (built_image.venv / "bin" / "pip").exists()


def test_every_kingest_module_imports_in_the_built_venv(built_image: BuiltImage) -> None:
    # `--help` exits before the lazy imports; importing every module proves the lock is whole.
    script = (
        "import importlib, pkgutil, kingest.runner, kingest.operator\n"
        "for package in (kingest.runner, kingest.operator):\n"
        "    for module in pkgutil.iter_modules(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(module.name)\n"
        "print(kingest.runner.__file__)\n"
    )
    result = built_image.run("python", "-c", script)
    assert result.returncode == 0, result.stderr
    # The code comes from the installed wheel, not from the work tree.
    assert str(built_image.venv) in result.stdout, result.stdout


@pytest.mark.parametrize(
    "argv",
    [["kingest", "--help"], ["kingest", "ingest", "--help"], ["kingest", "operator", "--help"]],
)
def test_entrypoint_commands_run_in_the_built_venv(
    built_image: BuiltImage, argv: list[str]
) -> None:
    result = built_image.run(*argv)
    assert result.returncode == 0, result.stderr
    assert "usage: kingest" in result.stdout


def test_runner_job_command_resolves_in_the_built_venv(built_image: BuiltImage) -> None:
    from kingest.operator.job import Run, RunnerDefaults, render_job
    from kingest.operator.spec import IngestionMeta, IngestionSpec

    spec = IngestionSpec.model_validate(
        {
            "source": {"uri": "duckdb:////data/src.duckdb", "table": "public.t"},
            "destination": {"uri": "duckdb:////data/dst.duckdb", "table": "public.t"},
        }
    )
    meta = IngestionMeta(name="x", namespace="ns", uid="u", generation=1)
    job = render_job(
        meta, spec, Run("Generation", 1), RunnerDefaults(image="img"), "2026-01-01T00:00:00.000000Z"
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = [*container["command"], *container["args"], "--help"]
    result = built_image.run(*command)
    assert result.returncode == 0, result.stderr
