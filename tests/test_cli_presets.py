"""`--instruction-preset` of the installers: the paper's words, checked before any cluster call."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from erank_cli.app import app
from erank_cli.common import resolve_instruction
from erank_contract.instructions import PRESETS

ENGINE = "http://127.0.0.1:9"  # nothing listens: a call that reached it would fail differently


@pytest.mark.parametrize(
    "command",
    [
        ["opensearch", "install", "--opensearch", ENGINE],
        ["elasticsearch", "install", "--elasticsearch", ENGINE],
    ],
)
@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--instruction-preset", "msmarco"], "unknown preset 'msmarco'"),
        (["--instruction-preset", "beir", "--instruction", "x"], "not both"),
    ],
)
def test_bad_preset_is_a_usage_error(command: list[str], extra: list[str], words: str) -> None:
    result = CliRunner().invoke(
        app, [*command, "--endpoint", "http://127.0.0.1:8080", *extra], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split())


def test_a_preset_installs_its_text() -> None:
    assert resolve_instruction(None, "bright_pony") == PRESETS["bright_pony"]
    assert resolve_instruction("own words", None) == "own words"
