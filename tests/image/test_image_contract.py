"""The image's contract: the Dockerfile's shape, and the image podman builds from it
(`scripts/image.sh`), run the way the chart's Deployment and the operator's Jobs run it
(UID 65532, read-only root, no capabilities). The cluster tests run it on the node.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.image.dockerfile import REPO_ROOT, Dockerfile, copy_sources, ignored, parse
from tests.platform.cluster import platform_artifacts

LOCK = REPO_ROOT / "requirements.lock"
BUILD_LOCK = REPO_ROOT / "requirements-build.lock"


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


# --- the image built from the Dockerfile ---------------------------------------------------


@dataclass
class BuiltImage:
    """The kingest image podman built from the Dockerfile (`scripts/image.sh`)."""

    ref: str

    def config(self) -> dict:
        inspected = subprocess.run(
            ["podman", "image", "inspect", self.ref], check=True, capture_output=True, text=True
        )
        return json.loads(inspected.stdout)[0]["Config"]

    def run(self, *args: str, entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the image as the chart runs it: UID 65532, read-only root, no capabilities, no
        network; `args` go to the ENTRYPOINT (or to `entrypoint`)."""
        argv = [
            *("podman", "--runtime", "runc", "run", "--rm", "--network", "none"),
            *("--user", "65532:65532", "--read-only", "--cap-drop", "ALL"),
            *("--security-opt", "no-new-privileges", "--tmpfs", "/tmp"),
            # Root lacks CAP_SYS_RESOURCE here: stay within the current hard limits.
            *("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"),
        ]
        if entrypoint:
            argv += ["--entrypoint", entrypoint]
        return subprocess.run([*argv, self.ref, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def built_image() -> BuiltImage:
    return BuiltImage(platform_artifacts().image)


def test_image_runs_as_the_numeric_user_with_kingest_as_entrypoint(
    built_image: BuiltImage,
) -> None:
    config = built_image.config()
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["kingest"]


def test_image_has_every_locked_dependency_at_its_version(built_image: BuiltImage) -> None:
    script = (
        "import json, importlib.metadata as m;"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    result = built_image.run("-c", script, entrypoint="python")
    assert result.returncode == 0, result.stderr
    installed = {canonicalize_name(k): v for k, v in json.loads(result.stdout).items()}
    for name, (version, _) in locked(LOCK).items():
        assert installed.get(name) == version, (
            f"{name}: locked {version}, image {installed.get(name)}"
        )
    # Packaging tools stay in the build stage.
    assert not {"pip", "setuptools"} & set(installed)


def test_every_kingest_module_imports_in_the_image(built_image: BuiltImage) -> None:
    # `--help` exits before the lazy imports; importing every module proves the lock is whole.
    script = (
        "import importlib, pkgutil, kingest.runner, kingest.operator\n"
        "for package in (kingest.runner, kingest.operator):\n"
        "    for module in pkgutil.iter_modules(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(module.name)\n"
        "print(kingest.runner.__file__)\n"
    )
    result = built_image.run("-c", script, entrypoint="python")
    assert result.returncode == 0, result.stderr
    # The code comes from the installed wheel in the image's virtualenv.
    assert result.stdout.startswith("/opt/kingest/"), result.stdout


def test_the_aws_clients_kingest_needs_are_in_the_image(built_image: BuiltImage) -> None:
    # S3 itself, and what the default credential chain calls: STS (IRSA, assumed roles),
    # SSO and sign-in. The image leaves botocore's other service models out.
    services = ["s3", "sts", "sso", "sso-oidc", "signin"]
    script = (
        "import boto3, sys\n"
        "for name in sys.argv[1:]:\n"
        "    boto3.client(name, region_name='eu-west-1', aws_access_key_id='k',"
        " aws_secret_access_key='s')\n"
        "print('ok')\n"
    )
    result = built_image.run("-c", script, *services, entrypoint="python")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


@pytest.mark.parametrize("argv", [["--help"], ["ingest", "--help"], ["operator", "--help"]])
def test_entrypoint_commands_run_restricted(built_image: BuiltImage, argv: list[str]) -> None:
    result = built_image.run(*argv)
    assert result.returncode == 0, result.stderr
    assert "usage: kingest" in result.stdout


def test_runner_job_command_runs_in_the_image(built_image: BuiltImage) -> None:
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
    result = built_image.run(*container["args"], "--help", entrypoint=container["command"][0])
    assert result.returncode == 0, result.stderr
