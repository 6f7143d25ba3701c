"""The ``helm`` binary the chart tests render with: built once from helm's Go module, cached.

PyPI has no helm that renders offline (helm-sdkpy wraps install/upgrade against a cluster and
needs Python >= 3.12), and no binary may be downloaded from outside the package registries; the
Go module proxy is one, and Go is on every machine of this project. ``go install`` of helm's
command on a fresh machine downloads ~550 MB of modules and compiles for ~5 CPU-minutes (about
3 minutes on two idle cores; 13 on two cores shared with three other test runs); the binary is
then kept under ``~/.cache/erank/helm/<version>/`` and found there in milliseconds.
CI builds it beside the set-up (``python3 tests/helm_tool.py``, standard library only), holding
the lock that :func:`helm_binary` waits on.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

HELM_MODULE = "helm.sh/helm/v4"
HELM_VERSION = "v4.3.2"
BUILD_TIMEOUT_S = 1200


def cache_dir() -> Path:
    """Where the built binary lives (``XDG_CACHE_HOME`` if set, else ``~/.cache``)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "erank" / "helm" / HELM_VERSION


def helm_binary() -> Path:
    """The cached helm; built with ``go install`` first if it is not there yet.

    The build goes to a temporary folder and is renamed into place, so an interrupted build
    never leaves a broken binary that later runs would trust.
    """
    binary = cache_dir() / "helm"
    if binary.is_file():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with (binary.parent / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (CI starts one early)
        if not binary.is_file():
            _build(binary)
    return binary


def _build(binary: Path) -> None:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the chart tests build helm from its Go module and need `go` on PATH")
    with tempfile.TemporaryDirectory(dir=binary.parent) as scratch:
        env = {**os.environ, "GOBIN": scratch, "CGO_ENABLED": "0", "GOFLAGS": ""}
        subprocess.run(
            [
                go,
                "install",
                "-trimpath",
                "-ldflags=-s -w",
                f"{HELM_MODULE}/cmd/helm@{HELM_VERSION}",
            ],
            env=env,
            check=True,
            timeout=BUILD_TIMEOUT_S,
        )
        os.replace(Path(scratch) / "helm", binary)


def helm(*args: str) -> str:
    """Run helm with ``args``; its stdout. A failure raises with helm's own message."""
    # helm's caches and config go to a throw-away folder: rendering needs none of them.
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": home,
            "HELM_CONFIG_HOME": home,
            "HELM_DATA_HOME": home,
        }
        done = subprocess.run(
            [str(helm_binary()), *args], env=env, capture_output=True, text=True, timeout=60
        )
    if done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


def render(
    chart: Path,
    values: dict[str, Any] | None = None,
    *extra: str,
    namespace: str = "search",
    release: str = "erank",
) -> list[dict[str, Any]]:
    """The manifests of ``helm template RELEASE CHART`` with ``values`` (a values file) and
    ``extra`` arguments (``--set`` …), parsed; empty documents dropped."""
    import yaml  # the venv's; building helm (``__main__``) needs only the standard library

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values or {}, file)
        file.flush()
        text = helm(
            "template", release, str(chart), "--namespace", namespace, "-f", file.name, *extra
        )
    return [doc for doc in yaml.safe_load_all(text) if doc]


if __name__ == "__main__":
    print(helm_binary())
