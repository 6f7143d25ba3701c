"""``python tests/engines [fetch|java]``: prefetch every pinned engine or show its Java."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from .java import find_java
from .maven import fetch
from .versions import ALL_ENGINES


def main(argv: Sequence[str] | None = None) -> int:
    """``python tests/engines [fetch|java]``: prefetch every pinned engine (e.g. in CI
    before the tests, so timings are not skewed) or print the Java each would use."""
    args = list(sys.argv[1:] if argv is None else argv) or ["fetch"]
    for kind, version in ALL_ENGINES:
        if args[0] == "fetch":
            began = time.monotonic()
            home = fetch(kind, version)
            print(f"{kind} {version}: {home} ({time.monotonic() - began:.1f} s)")
        else:
            print(f"{kind} {version}: {find_java(kind, version)}")
    return 0
