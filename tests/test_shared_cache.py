"""The shared score cache against a real Valkey (tests/valkey_server.py): what is put is what
is got, old or garbled values miss, and a dead, restarted or hung server costs a lookup at most
its timeout, never an error, and one warning per outage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
import redis.asyncio as redis
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from pydantic import ValidationError
from valkey_server import valkey_server

from erank.cache import CachedScore
from erank.score import ParsedAnswer
from erank.settings import load_settings
from erank.shared_cache import FORMAT, RECONNECT_AFTER_S, SharedScoreCache, decode, encode

SLACK_S = 0.2  # scheduling on a shared two-core machine, beyond the lookup's own timeout
KEYS = [bytes([i]) * 16 for i in range(3)]
SCORED = CachedScore(ParsedAnswer(7, 0.8125, "", ""), with_reasoning=False)
REASONED = CachedScore(ParsedAnswer(3, 0.25, "the document <b>is</b> off topic", "d"), True)


def errors(op: str, reason: str) -> float:
    labels = {"op": op, "reason": reason}
    return REGISTRY.get_sample_value("erank_score_cache_shared_errors_total", labels) or 0.0


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "erank.shared_cache" and r.levelno >= logging.WARNING
    ]


async def found(
    cache: SharedScoreCache, keys: Sequence[bytes], with_reasoning: bool = False
) -> list[CachedScore | None]:
    """The entries once every key answers (writes are in the background), or after 3 s."""
    deadline = time.monotonic() + 3
    while True:
        entries = await cache.get_many(keys, with_reasoning)
        if all(entries) or time.monotonic() > deadline:
            return entries
        await asyncio.sleep(0.02)


async def stored(cache: SharedScoreCache, entries: Sequence[tuple[bytes, CachedScore]]) -> None:
    """Write until every entry reads back: a test's precondition, not its subject (on a loaded
    machine the first connect can outlast a short timeout, and that write is dropped by design)."""
    keys = [key for key, _ in entries]
    deadline = time.monotonic() + RECONNECT_AFTER_S + 10
    while await cache.get_many(keys, False) != [value for _, value in entries]:
        assert time.monotonic() < deadline, "the server never stored the precondition's entries"
        cache.put_many(entries)
        await asyncio.sleep(0.05)


@pytest.fixture
async def cache(valkey_url: str) -> AsyncIterator[SharedScoreCache]:
    """A cache on the session's server, in a namespace of its own."""
    shared = SharedScoreCache(valkey_url, None, 1.0, namespace=f"test:{uuid.uuid4().hex}:")
    yield shared
    await shared.close()


@pytest.fixture
async def raw(valkey_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(valkey_url)
    yield client
    await client.aclose()


async def test_round_trip(cache: SharedScoreCache, raw: redis.Redis) -> None:
    cache.put_many([(KEYS[0], SCORED), (KEYS[1], REASONED)])
    assert await found(cache, KEYS[:2]) == [SCORED, REASONED]
    assert await cache.get_many(KEYS, False) == [SCORED, REASONED, None]
    name = cache.namespace + KEYS[0].hex()
    assert await raw.get(name) == encode(SCORED)
    assert await raw.pttl(name) == -1  # no TTL given: no expiry


async def test_entry_without_reasoning_misses_when_reasoning_is_asked(
    cache: SharedScoreCache,
) -> None:
    cache.put_many([(KEYS[0], SCORED), (KEYS[1], REASONED)])
    assert await found(cache, KEYS[:2]) == [SCORED, REASONED]
    assert await cache.get_many(KEYS[:2], with_reasoning=True) == [None, REASONED]


async def test_entries_expire_after_the_ttl(valkey_url: str, raw: redis.Redis) -> None:
    cache = SharedScoreCache(valkey_url, 0.3, 1.0, namespace=f"ttl:{uuid.uuid4().hex}:")
    cache.put_many([(KEYS[0], SCORED)])
    assert await found(cache, KEYS[:1]) == [SCORED]
    assert 0 < await raw.pttl(cache.namespace + KEYS[0].hex()) <= 300
    await asyncio.sleep(0.4)
    assert await cache.get_many(KEYS[:1], False) == [None]
    await cache.close()


async def test_namespaces_do_not_collide(cache: SharedScoreCache, valkey_url: str) -> None:
    other = SharedScoreCache(valkey_url, None, 1.0, namespace=cache.namespace + "other:")
    cache.put_many([(KEYS[0], SCORED)])
    other.put_many([(KEYS[0], REASONED)])
    assert await found(cache, KEYS[:1]) == [SCORED]
    assert await found(other, KEYS[:1]) == [REASONED]
    await other.close()


@pytest.mark.parametrize(
    "value",
    [
        b'[2,7,0.5,"","",false]',  # a later format
        b'[1,7,0.5,"",false]',  # a field short
        b'[1,true,0.5,"","",false]',  # answer not an integer
        b'[1,7,"0.5","","",false]',  # probability not a number
        b'{"answer":7}',
        b"not json",
        b"\xff\xfe",
        b"",
    ],
)
async def test_an_unreadable_value_is_a_miss(
    cache: SharedScoreCache, raw: redis.Redis, value: bytes
) -> None:
    failures = errors("get", "error")
    await raw.set(cache.namespace + KEYS[0].hex(), value)
    assert await cache.get_many(KEYS[:1], False) == [None]
    assert errors("get", "error") == failures


answers = st.builds(
    ParsedAnswer,
    st.none() | st.integers(),
    st.floats(allow_nan=False),
    st.text(st.characters(exclude_categories=())),  # lone surrogates included
    st.text(),
)


@given(answers, st.booleans())
def test_any_answer_round_trips(parsed: ParsedAnswer, with_reasoning: bool) -> None:
    value = CachedScore(parsed, with_reasoning)
    stored = encode(value)
    assert stored.startswith(f"[{FORMAT},".encode())
    assert decode(stored, with_reasoning=False) == value
    assert decode(stored, with_reasoning=True) == (value if with_reasoning else None)


async def test_a_killed_server_costs_one_timeout_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGKILL, then the same port again: all miss at once, writes dropped without a raise, one
    warning line (the password hidden), and hits again once the server is back."""
    password = "s3cret-" + uuid.uuid4().hex
    timeout_s = 0.1
    with valkey_server(password=password) as server:
        cache = SharedScoreCache(server.url, None, timeout_s)
        await stored(cache, [(KEYS[0], SCORED)])
        caplog.clear()  # a slow first connect may have warned: the subject starts here
        server.kill()
        caplog.set_level(logging.INFO, logger="erank.shared_cache")
        for _ in range(5):
            start = time.perf_counter()
            assert await cache.get_many(KEYS, False) == [None] * 3
            assert time.perf_counter() - start < timeout_s + SLACK_S
            cache.put_many([(KEYS[1], SCORED)])
        assert len(warnings(caplog)) == 1, warnings(caplog)
        assert "unavailable" in warnings(caplog)[0]
        assert errors("get", "down") > 0  # after the first failure: no round trip at all

        server.start()  # empty: nothing was persisted
        deadline = time.monotonic() + RECONNECT_AFTER_S + 3
        while await cache.get_many(KEYS[2:], False) != [SCORED]:
            assert time.monotonic() < deadline, "no hit after the server came back"
            cache.put_many([(KEYS[2], SCORED)])
            await asyncio.sleep(0.05)
        assert any("answers again" in r.getMessage() for r in caplog.records)
        assert len(warnings(caplog)) == 1
        assert password not in caplog.text and "***" in caplog.text
        await cache.close()


async def test_a_hung_server_costs_a_lookup_its_timeout() -> None:
    """SIGSTOP: connections stay open and nothing answers. Lookups end at their deadline (the
    caller's, when shorter), writes over the in-flight bound are dropped, and the cache serves
    again once the server does."""
    timeout_s = 0.2
    with valkey_server() as server:
        cache = SharedScoreCache(server.url, None, timeout_s)
        await stored(cache, [(KEYS[0], SCORED)])
        server.pause()
        writer = SharedScoreCache(server.url, None, timeout_s, max_pending_writes=2)
        try:
            backlog = errors("put", "backlog")
            for _ in range(3):
                writer.put_many([(KEYS[1], SCORED)])
            assert errors("put", "backlog") == backlog + 1
            await writer.close()  # its two writes end at their timeout

            timeouts = errors("get", "timeout")
            start = time.perf_counter()
            assert await cache.get_many(KEYS, False, timeout_s=0.05) == [None] * 3
            assert time.perf_counter() - start < 0.05 + SLACK_S
            start = time.perf_counter()
            assert await cache.get_many(KEYS, False) == [None] * 3  # tried: not judged down yet
            assert time.perf_counter() - start < timeout_s + SLACK_S
            assert errors("get", "timeout") == timeouts + 2
        finally:
            server.resume()
        await asyncio.sleep(RECONNECT_AFTER_S)
        assert await found(cache, KEYS[:1]) == [SCORED]
        await cache.close()


@pytest.mark.parametrize(
    "url", ["http://user:s3cret@cache:6379", "s3cret@cache:6379", "redis://:s3cret@cache:port"]
)
def test_a_bad_url_names_the_setting_and_hides_the_password(url: str) -> None:
    with pytest.raises(ValidationError, match="score_cache_url") as refused:
        load_settings(score_cache_url=url)
    assert "s3cret" not in str(refused.value)


def test_accepted_urls() -> None:
    for url in ["redis://c:6379/0", "rediss://u:p@c", "valkey://c", "valkeys://c", "unix:///s"]:
        assert load_settings(score_cache_url=url).score_cache_url is not None
    settings = load_settings(score_cache_url="valkey://:s3cret@c:6379")
    assert "s3cret" not in repr(settings)
    assert settings.score_cache_shared_timeout_ms == 50


def test_serve_refuses_a_bad_url_in_one_line() -> None:
    """`erank serve` prints one line naming the setting, no traceback and no password."""
    run = subprocess.run(
        [sys.executable, "-c", "from erank_cli.app import app; app()", "serve"],
        env={**os.environ, "ERANK_SCORE_CACHE_URL": "http://user:s3cret@cache:6379"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert run.stderr.splitlines() == [
        "error: score_cache_url: must be a redis://, rediss://, valkey://, valkeys:// or unix://"
        " URL (not http://)"
    ]
