"""`erank demo`, the main job, as a newcomer runs it: offline, CPU only, prints the table."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from erank_cli.demo import engine_log

pytestmark = pytest.mark.engine


def test_demo_prints_before_after_table_and_the_warning() -> None:
    """The screen holds the demo's own lines only; vLLM's logs and its engine processes'
    warnings and progress bars are in the engine log the demo names."""
    env = {**os.environ, "COLUMNS": "140"}
    out = subprocess.run(
        [sys.executable, "-m", "erank_cli", "demo"],
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
    assert out.stderr == "", out.stderr
    assert "WARNING" not in text and "Loading safetensors" not in text, text
    log = engine_log()
    assert f"engine log: {log}" in text
    assert "Loading safetensors" in log.read_text(errors="replace")


def test_demo_on_the_real_qwen3_tokenizer_counts_real_tokens() -> None:
    from reference_erank import reference_prompt
    from transformers import AutoTokenizer

    from erank.qwen3_tokenizer import qwen3_tokenizer_dir
    from erank_contract.instructions import DEFAULT_INSTRUCTION

    qwen3 = AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))
    expected = sum(
        len(
            qwen3(reference_prompt(qwen3, "I am happy", doc, DEFAULT_INSTRUCTION, 2048))[
                "input_ids"
            ]
        )
        for doc in ("excited", "peaceful", "sad")
    )
    env = {**os.environ, "COLUMNS": "140"}
    out = subprocess.run(
        # eager: this test is about token counts, and skipping graph compilation saves CI ~40 s
        [sys.executable, "-m", "erank_cli", "demo", "--tokenizer", "qwen3", "--enforce-eager"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{expected} prompt tokens" in out.stdout
    assert "template erank-v2" in out.stdout
