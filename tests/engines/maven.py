"""Fetching: engine distributions and OpenSearch plugin zips from Maven Central, cached."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from .versions import (
    _NAME_RE,
    _VERSION_RE,
    DEPENDENCY_PLUGIN,
    MAVEN_GROUPS,
    MAVEN_TIMEOUT,
    OPENSEARCH_PLUGIN_GROUP,
    EngineError,
    EngineKind,
    _tail,
)


def cache_dir() -> Path:
    """The download cache: ``$ERANK_ENGINES_CACHE`` or ``~/.cache/erank-engines``."""
    configured = os.environ.get("ERANK_ENGINES_CACHE")
    root = Path(configured).expanduser() if configured else Path.home() / ".cache/erank-engines"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive inter-process lock on ``<cache>/locks/<name>.lock`` (parallel test runs)."""
    locks = cache_dir() / "locks"
    locks.mkdir(exist_ok=True)
    with open(locks / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _maven_copy(artifact: str, output_dir: Path) -> Path:
    """``mvn dependency:copy`` one ``G:A:V:zip`` artifact into ``output_dir``; the file."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EngineError(f"cannot fetch {artifact}: Maven (`mvn`) is not on PATH")
    output_dir.mkdir(parents=True, exist_ok=True)
    command = [
        mvn,
        "-B",
        "-q",
        f"{DEPENDENCY_PLUGIN}:copy",
        f"-Dartifact={artifact}",
        f"-DoutputDirectory={output_dir}",
        "-Dmdep.overWriteReleases=true",
    ]
    try:
        # cwd without a pom.xml, so no project of ours is picked up.
        done = subprocess.run(
            command,
            cwd=output_dir,
            capture_output=True,
            text=True,
            timeout=MAVEN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"`mvn dependency:copy` of {artifact} timed out") from exc
    files = sorted(output_dir.glob("*.zip"))
    if done.returncode != 0 or len(files) != 1:
        output = _tail(done.stdout + done.stderr, 40)
        raise EngineError(
            f"cannot fetch {artifact} from Maven (exit {done.returncode}); is the version"
            f" published on Maven Central?\n{output}"
        )
    return files[0]


def _extract_zip(archive: Path, target: Path) -> None:
    """Unzip keeping the Unix permission bits (zipfile drops them, and bin/ must stay +x)."""
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            path = Path(zipped.extract(info, target))
            mode = (info.external_attr >> 16) & 0o7777
            if mode and not info.is_dir():
                path.chmod(mode | 0o444)


def _check_version(version: str) -> None:
    if not _VERSION_RE.match(version):
        raise EngineError(f"not a version: {version!r}")


def fetch(kind: EngineKind, version: str) -> Path:
    """The unpacked integ-test-zip of ``kind`` ``version`` (its home directory), fetching it
    with Maven and unpacking it into the cache on first use; instant afterwards."""
    if kind not in MAVEN_GROUPS:
        raise EngineError(f"unknown engine kind {kind!r}")
    _check_version(version)
    dist = cache_dir() / "dist" / f"{kind}-{version}"
    if not dist.is_dir():
        with _locked(f"{kind}-{version}"):
            if not dist.is_dir():
                dist.parent.mkdir(parents=True, exist_ok=True)
                work = Path(tempfile.mkdtemp(prefix=f".tmp-{kind}-{version}-", dir=dist.parent))
                try:
                    archive = _maven_copy(f"{MAVEN_GROUPS[kind]}:{version}:zip", work / "zip")
                    _extract_zip(archive, work / "unpacked")
                    os.replace(work / "unpacked", dist)  # atomic: dist is whole or absent
                finally:
                    shutil.rmtree(work, ignore_errors=True)
    homes = [p for p in dist.iterdir() if p.is_dir()]
    if len(homes) != 1 or not (homes[0] / "bin" / kind).is_file():
        raise EngineError(f"{dist} does not hold one {kind} distribution; delete it to refetch")
    return homes[0]


def fetch_plugin(artifact: str, version: str) -> Path:
    """The zip of an OpenSearch plugin from Maven Central, cached.

    ``artifact`` is an artifactId of ``org.opensearch.plugin`` (``opensearch-job-scheduler``,
    ``opensearch-ml-plugin``) or a full ``group:artifactId``. ``version`` is the plugin's
    ``X.Y.Z.0``; a server version ``X.Y.Z`` is accepted and gets the ``.0``. The plugin version
    must match the server's.
    """
    group, _, name = artifact.rpartition(":")
    group = group or OPENSEARCH_PLUGIN_GROUP
    if not _NAME_RE.match(name) or not all(_NAME_RE.match(g) for g in group.split(".")):
        raise EngineError(f"not a plugin artifact: {artifact!r}")
    _check_version(version)
    if re.fullmatch(r"\d+\.\d+\.\d+", version):
        version += ".0"
    plugins = cache_dir() / "plugins"
    target = plugins / f"{group}-{name}-{version}.zip"
    if not target.is_file():
        with _locked(f"plugin-{group}-{name}-{version}"):
            if not target.is_file():
                plugins.mkdir(parents=True, exist_ok=True)
                work = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-{version}-", dir=plugins))
                try:
                    downloaded = _maven_copy(f"{group}:{name}:{version}:zip", work)
                    os.replace(downloaded, target)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
    return target
