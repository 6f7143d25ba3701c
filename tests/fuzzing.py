"""What the fuzz tests share: a scoring server that answers in one engine step, case counts,
and the check that nothing was logged with a traceback.

Valid generated requests reach the real engine. On a server whose default mode is
``score_only`` (one forward step per document; the session's engine, shared) and with texts
mostly from a small pool (the score cache answers repeats), thousands of cases stay in seconds.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from conftest import engine_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from erank.server import ScoringServer, running_server

# caplog is set up once per test, not per example: each example clears it and checks its own
# records. Hypothesis' deadline is off as in conftest's profile (the machine is shared).
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
CALL_TIMEOUT_S = 60.0  # no generated case may hang: every call has this deadline
POOL = ["fox", "a quick brown fox", "the lazy dog sleeps", "ok"]
UINT32_MAX = 2**32 - 1

pool_texts = st.sampled_from(POOL)
texts = st.one_of(  # mostly pooled: a new valid text costs an engine step, a pooled one a lookup
    pool_texts,
    pool_texts,
    pool_texts,
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "<answer>10</answer>", "x" * 100_001]),
)
uint32s = st.one_of(
    st.sampled_from([0, 1, 2, 8, 2048, 8192, 8193, UINT32_MAX]), st.integers(0, UINT32_MAX)
)
any_floats = st.one_of(st.sampled_from([0.0, 0.2, 1.0, -1.0, 2.0]), st.floats())

# Generated cases sent, per surface; each fuzz module prints them at its end (pytest -s).
CASES: collections.Counter[str] = collections.Counter()


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """No record at ERROR or above, and none at any level carrying a traceback."""
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [f"{r.name}: {r.getMessage()[:300]}" for r in bad]


@pytest_asyncio.fixture(scope="module", name="fast_server")
async def fast_server_fixture(tiny_server: ScoringServer) -> AsyncIterator[ScoringServer]:
    """A gRPC server on the session's engine whose default mode is ``score_only``."""
    fast = engine_settings(tiny_server.settings.model, default_mode="score_only")
    async with running_server(fast, tiny_server.backend) as server:
        yield server
