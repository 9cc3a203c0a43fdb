"""Reference tools in virtualenvs of their own, installed once per machine.

Some tests check kingest's output with the real tool that defines the format (dlt reading our
`_dlt_*` objects). Those tools have dependencies kingest must not share, so each lives in its
own venv under ~/.cache/kingest/venvs, keyed by the pinned requirement.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import venv
from pathlib import Path

CACHE = Path(os.environ.get("KINGEST_CACHE", Path.home() / ".cache" / "kingest")) / "venvs"


def python_with(requirement: str) -> Path:
    """The Python of a venv holding exactly `requirement` (e.g. "dlt==1.21.0")."""
    folder = CACHE / requirement.replace("==", "-").replace("/", "_")
    python = folder / "bin" / "python"
    done = folder / ".installed"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:  # parallel test workers install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            venv.create(folder, with_pip=True, clear=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", requirement],
                check=True,
                stdout=sys.stderr,
                # Not the repository: its operator/ folder would shadow the stdlib module.
                cwd=folder,
            )
            done.touch()
    return python
