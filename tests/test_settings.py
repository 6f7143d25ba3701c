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


# `erank serve` options whose setting has another name (its docstring says so).
_SETTING_OF = {"thinking_budget": "default_thinking_budget", "score_cache_ttl": "score_cache_ttl_s"}


def _stated(text: str) -> object:
    """A default as a flag's help writes it: "[1024]", "[256 MiB]", "[off]", "[0.9]"."""
    if text in ("off", "forever"):
        return None
    if text.endswith(" MiB"):
        return int(text[: -len(" MiB")]) * 1024 * 1024
    try:
        return float(text)
    except ValueError:
        return text


def test_serve_help_states_the_settings_defaults() -> None:
    """Every "[default]" `erank serve --help` shows is the setting's real default (it once said
    --max-new-tokens [1024] while the server generated up to 4096)."""
    import re

    import typer

    from erank.settings import ServerSettings
    from erank_cli.app import app

    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    checked = 0
    for param in serve.params:
        stated = re.search(r"\[([^\]]+)\]$", getattr(param, "help", None) or "")
        field = _SETTING_OF.get(param.name, param.name)
        if stated is None or field not in ServerSettings.model_fields:
            continue
        default = ServerSettings.model_fields[field].default
        want = default if default is None or isinstance(default, str) else float(default)
        assert _stated(stated.group(1)) == want, (
            f"--{param.name.replace('_', '-')}: help says {stated.group(0)}"
        )
        checked += 1
    assert checked >= 8
