"""The official Elasticsearch 8 client, in a virtual environment of its own.

elasticsearch-py 8.x needs elastic-transport 8.x, which cannot share an environment with the
9.x client the project installs; yet an application on Elasticsearch 8 keeps its 8.x client, and
the proxy must serve it (it sends ``compatible-with=8`` media types, which 9.x never sends). So
the tests build a venv under the temp directory with ``python -m venv`` and pip (through pip's
own cache; about 10 s on an idle machine), reuse it while it holds a working 8.x client, and
drive the client in a subprocess (:mod:`es8_client`). A failure to build it fails the tests
that need it.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REQUIREMENT = "elasticsearch>=8.19,<9"
_CHECK = "import elasticsearch, sys; sys.exit(elasticsearch.__versionstr__[:2] != '8.')"


def _works(python: Path) -> bool:
    return python.exists() and subprocess.run([str(python), "-c", _CHECK]).returncode == 0


@functools.cache
def es8_python() -> Path:
    """The Python of a venv holding :data:`REQUIREMENT`, built once per machine; a build that
    another test run finishes first wins (each builds aside and renames into place)."""
    key = hashlib.sha256(f"{REQUIREMENT} {sys.version}".encode()).hexdigest()[:12]
    home = Path(tempfile.gettempdir()) / f"erank-es8-{key}"
    python = home / "bin" / "python"
    if _works(python):
        return python
    building = Path(tempfile.mkdtemp(prefix="erank-es8-build-"))
    try:
        # no pip of its own (ensurepip is the slow part): this environment's pip installs there
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(building)], check=True)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        target = str(building / "bin" / "python")
        subprocess.run([*pip, "--python", target, "install", REQUIREMENT], check=True)
        shutil.rmtree(home, ignore_errors=True)
        building.rename(home)
    except OSError:
        if not _works(python):  # not another run's finished venv in our way
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    if not _works(python):
        raise RuntimeError(f"{home}: no working {REQUIREMENT} after building it")
    return python
