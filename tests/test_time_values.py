"""``--timeout`` of the installers: the clusters' time values (``500ms``, ``2s``, ``1m``)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from erank_cli.app import app
from opensearch_plugin.options import format_time_value, parse_time_value


@given(st.integers(min_value=1, max_value=10**8))
def test_what_install_writes_reads_back(ms: int) -> None:
    assert parse_time_value(format_time_value(ms)) == ms


@given(st.integers(min_value=1, max_value=10**6))
def test_a_bare_number_is_seconds_and_units_scale(n: int) -> None:
    assert parse_time_value(str(n)) == n * 1000
    assert parse_time_value(f"{n}s") == n * 1000
    assert parse_time_value(f"{n}ms") == n
    assert parse_time_value(f"{n}m") == n * 60_000


def test_whole_seconds_are_written_as_before() -> None:
    assert format_time_value(10_000) == "10s"
    assert format_time_value(500) == "500ms"


VALID = re.compile(r"\s*[0-9]+(ms|s|m)?\s*")


@given(st.text(max_size=12).filter(lambda text: not VALID.fullmatch(text)))
def test_anything_else_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="such as 500ms, 2s or 1m"):
        parse_time_value(text)


@pytest.mark.parametrize("bad", ["0", "0ms", "-1s", "1.5s", "2h", "5 s", ""])
def test_bad_values_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="positive time"):
        parse_time_value(bad)


def test_the_command_names_the_option() -> None:
    done = CliRunner().invoke(
        app,
        ["opensearch", "install", "--opensearch=http://h:9", "--endpoint=x", "--timeout=5x"],
    )
    assert done.exit_code == 2
    assert "Invalid value for '--timeout'" in done.output
    assert "'5x'" in done.output
