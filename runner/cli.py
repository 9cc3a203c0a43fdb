"""The `kingest` command line."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("kingest: not yet implemented", file=sys.stderr)
    return 2
