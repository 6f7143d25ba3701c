"""`erank demo`, the main job, as a newcomer runs it: offline, CPU only, prints the table."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.engine


def test_demo_prints_before_after_table_and_the_warning() -> None:
    env = {**os.environ, "COLUMNS": "140"}
    out = subprocess.run(
        [sys.executable, "-m", "erank.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for column in ("before", "first-stage", "answer", "rank_score", "hybrid", "after"):
        assert column in text
    assert "query: 'I am happy'" in text and "excited" in text
    assert "random weights" in text and "mean nothing about relevance" in text
    assert "Traceback" not in out.stderr
