"""Server settings: flags over ERANK_* environment over the YAML config file over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from erank.settings import load_settings


def test_defaults_follow_the_paper() -> None:
    s = load_settings()
    assert (s.model, s.port, s.host) == ("Alibaba-NLP/ERank-4B", 50051, "127.0.0.1")
    assert (s.max_new_tokens, s.default_truncate_length, s.default_alpha) == (4096, 2048, 0.2)
    assert s.max_documents == 1000


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "erank.yaml"
    config.write_text("model: from-file\nport: 1111\nmax_num_seqs: 7\ndtype: float16\n")
    monkeypatch.setenv("ERANK_PORT", "2222")
    monkeypatch.setenv("ERANK_DTYPE", "bfloat16")
    s = load_settings(config_file=config, dtype="float32", model=None)
    assert s.model == "from-file"  # file only
    assert s.max_num_seqs == 7
    assert s.port == 2222  # env over file
    assert s.dtype == "float32"  # flag over env


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "erank.yaml"
    config.write_text("max_documents: 50\n")
    monkeypatch.setenv("ERANK_CONFIG_FILE", str(config))
    assert load_settings().max_documents == 50


def test_bad_values_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="gpu_memory_utilization"):
        load_settings(gpu_memory_utilization=1.5)
    config = tmp_path / "erank.yaml"
    config.write_text("no_such_knob: 1\n")
    with pytest.raises(ValidationError, match="no_such_knob"):
        load_settings(config_file=config)
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        load_settings(config_file=tmp_path / "missing.yaml")
