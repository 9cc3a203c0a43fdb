"""Read the Dockerfile and `.dockerignore` as data, so tests can replay the image build.

There is no Docker engine on the test machines; the build stage's commands are plain shell
over a virtualenv, and running them outside Docker (with the image paths mapped into a temp
folder) checks the same thing the image build would: the wheel builds from exactly the
files the Dockerfile copies, and installs with the locked dependencies into a clean venv.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


@dataclass
class Instruction:
    keyword: str  # upper-cased: FROM, RUN, COPY, ...
    value: str  # the rest of the logical line, continuations joined

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction (ENTRYPOINT ["kingest"]), else None."""
        return json.loads(self.value) if self.value.startswith("[") else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]  # ARGs declared before the first FROM, with their defaults
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].strip() + " "
            continue
        lines.append((current + stripped).strip())
        current = ""
    if current:
        lines.append(current.strip())
    return lines


def parse(path: Path = DOCKERFILE) -> Dockerfile:
    """The Dockerfile's global ARGs and its stages, in order."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword == "FROM":
            words = value.split()
            base = words[0]
            for arg, default in args.items():
                base = base.replace(f"${{{arg}}}", default).replace(f"${arg}", default)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages and keyword == "ARG":
            arg, _, default = value.partition("=")
            args[arg] = default
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, value))
    return Dockerfile(args=args, stages=stages)


def copy_sources(instruction: Instruction) -> list[str]:
    """The build-context paths a `COPY` takes (none for `COPY --from=stage`)."""
    words = shlex.split(instruction.value)
    if any(w.startswith("--from=") for w in words):
        return []
    words = [w for w in words if not w.startswith("--")]
    return words[:-1]


def ignored(path: str, patterns: list[str] | None = None) -> bool:
    """Whether `.dockerignore` keeps `path` (relative to the context) out of the build context.

    Docker's rules, for the patterns this project uses: the last matching pattern wins, `!`
    re-includes, and a pattern that matches a folder also matches everything under it.
    """
    if patterns is None:
        patterns = [
            line.strip()
            for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    parts = Path(path).parts
    # A folder's pattern covers what is inside it: match every leading part of the path;
    # a `**/` pattern matches at any depth: match every part-sequence ending a leading part.
    heads = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    anywhere = ["/".join(parts[j : i + 1]) for i in range(len(parts)) for j in range(i + 1)]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        candidates = heads
        if glob.startswith("**/"):
            glob, candidates = glob.removeprefix("**/"), anywhere
        if any(fnmatch.fnmatchcase(c, glob) for c in candidates):
            verdict = not negated
    return verdict
