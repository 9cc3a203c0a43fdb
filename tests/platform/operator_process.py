"""`kingest operator` as a local process: started until its liveness endpoint answers,
SIGKILLed or stopped by tests, its log read back. The operator's e2e tests and the chart's
tests say how to start it (flags and environment); this is what they share."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from tests.platform.processes import ManagedProcess

KINGEST = Path(sys.executable).parent / "kingest"
"""This venv's console script: the image's ENTRYPOINT (`tests/image` checks it)."""


class OperatorProcess:
    """One operator at a time; each start gets its own log file in ``log_dir``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.process: ManagedProcess | None = None
        self._names: list[str] = []

    def launch(self, name: str, args: list[str], env: dict[str, str], healthz_port: int) -> None:
        """Run ``kingest <args>`` with ``env``; return once /healthz on the port answers."""
        self._names.append(name)
        self.process = ManagedProcess(name, [str(KINGEST), *args], self.log_dir, env=env)
        url = f"http://127.0.0.1:{healthz_port}/healthz"
        self.process.wait_until(
            lambda: urllib.request.urlopen(url, timeout=1).status == 200,
            timeout=60,
            what="liveness endpoint",
        )

    def kill(self) -> None:
        """SIGKILL: no chance to finish or hand over anything it was doing."""
        assert self.process is not None
        self.process.proc.kill()
        self.process.proc.wait()
        self.process.stop()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def logs(self) -> str:
        """Everything every start of this operator logged, in start order."""
        return "\n".join(
            (self.log_dir / f"{name}.log").read_text(errors="replace") for name in self._names
        )
