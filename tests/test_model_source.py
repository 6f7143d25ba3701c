"""A model that cannot be loaded is one line that names it, says why and what to do, at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import constants

from erank.model_source import ModelUnavailable, check_model

ERANK = Path(sys.prefix) / "bin" / "erank"
MISSING = "nobody-at-all/no-such-erank-model"


def test_serve_with_an_unloadable_model_exits_with_one_line() -> None:
    """`erank serve` on a hub id that is neither cached nor reachable (no network here, or no
    such repository where there is one): non-zero exit in seconds, not ~35 s of retries and a
    traceback; the last line names the model and the ways out."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    start = time.monotonic()
    run = subprocess.run(
        [str(ERANK), "serve", "--model", MISSING, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    took = time.monotonic() - start
    assert run.returncode != 0
    assert "Traceback" not in run.stderr + run.stdout
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"erank serve: cannot load model '{MISSING}'"), run.stderr
    assert "--model /path/to/model" in last and "HF_HUB_OFFLINE=1" in last
    assert took < 30, took


def test_offline_mode_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailable, match=r"not in the Hugging Face cache .* HF_HUB_OFFLINE"):
        check_model(MISSING)


def test_local_folders(tmp_path: Path, random_checkpoint: Path) -> None:
    check_model(str(random_checkpoint))
    with pytest.raises(ModelUnavailable, match=r"has no config\.json"):
        check_model(str(tmp_path))
    with pytest.raises(ModelUnavailable, match="no such folder"):
        check_model(str(tmp_path / "gone"))
