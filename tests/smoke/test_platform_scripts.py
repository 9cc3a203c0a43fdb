"""The platform's set-up scripts refuse a machine they cannot work on, saying why, at once."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.parametrize("script", ["platform.sh", "image.sh", "kube-binaries.sh"])
def test_without_root_a_script_says_it_needs_root_and_stops(script: str) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [*NOBODY, "bash", str(SCRIPTS / script)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent"},
    )
    assert result.returncode == 1
    assert "root" in result.stderr, result.stderr
    assert time.monotonic() - started < 10


def test_kubebuilder_assets_without_the_node_binaries_is_named(tmp_path: Path) -> None:
    (tmp_path / "etcd").write_text("#!/bin/sh\n")
    (tmp_path / "etcd").chmod(0o755)
    result = subprocess.run(
        ["bash", str(SCRIPTS / "kube-binaries.sh")],
        capture_output=True,
        text=True,
        timeout=30,
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(tmp_path),
            "KUBEBUILDER_ASSETS": str(tmp_path),
        },
    )
    assert result.returncode == 1
    assert f"KUBEBUILDER_ASSETS={tmp_path} has no executable kube-apiserver" in result.stderr
