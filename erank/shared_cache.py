"""The shared score cache: one Valkey/Redis every replica reads and writes, so a document scored
by one scoring server is a hit on all of them (the in-process :class:`erank.cache.ScoreCache`
is per replica and starts empty at every restart).

It is an optimisation, never a dependency: a down, slow or misconfigured server costs a call at
most its timeout and never an error. Lookups are one ``MGET`` bounded by a socket timeout and by
``asyncio.wait_for``; nothing is retried inside that deadline (a retry would spend the caller's
time on a server that just failed). After a failure the server rests for
:data:`RECONNECT_AFTER_S`: calls in that window answer "all miss" at once without a round trip,
and the first call after it reconnects (lazily: redis-py opens a new connection on use). An
outage is one WARNING line when it starts and one INFO line when the server answers again, not
a line per call; every failed or skipped call is counted in
``erank_score_cache_shared_errors{op, reason}``.

Writes are fire-and-forget: ``put_many`` schedules one pipelined ``SET … PX`` on the event loop
and returns; at most ``max_pending_writes`` are in flight, and a batch over that is dropped
(and counted), so a slow server cannot pile up memory.

Keys are ``namespace`` + the hex of the 16-byte key (:func:`erank.cache.score_key`). Values
are compact JSON arrays whose first item is :data:`FORMAT`: an entry written by another version
of this code, or any value it cannot read, is a miss, not an error. The password or token a URL
may carry never reaches a log line (:func:`redact`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from erank import metrics
from erank.cache import CachedScore
from erank.score import ParsedAnswer

log = logging.getLogger(__name__)

FORMAT = 1  # first item of every stored value; bump it when the layout below changes
DEFAULT_NAMESPACE = "erank:score:"
DEFAULT_MAX_PENDING_WRITES = 64  # write batches in flight; one per scored request
RECONNECT_AFTER_S = 1.0  # how long a failed server rests before a call tries it again
# URL schemes accepted → the scheme redis-py knows (it has no valkey:// of its own)
SCHEMES = {
    "redis": "redis",
    "rediss": "rediss",
    "valkey": "redis",
    "valkeys": "rediss",
    "unix": "unix",
}


def client_url(url: str) -> str:
    """``url`` as redis-py takes it (``valkey://`` → ``redis://``, ``valkeys://`` →
    ``rediss://``); ValueError naming the schemes if it is not one (the URL redacted at most)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        *others, last = (f"{name}://" for name in SCHEMES)
        shown = f"not {scheme}://" if sep and scheme.isascii() and scheme.isalnum() else "no scheme"
        raise ValueError(f"must be a {', '.join(others)} or {last} URL ({shown})")
    converted = f"{SCHEMES[scheme.lower()]}://{rest}"
    try:
        parse_url(converted)  # a bad port or query value fails here, not at the first lookup
    except ValueError as err:
        raise ValueError(f"{redact(url)}: {_mask(str(err), url)}") from None
    return converted


def redact(url: str) -> str:
    """``url`` fit for a log line: the password (``user:***@``, ``?password=***``) hidden."""
    parts = urlsplit(url)
    user, at, host = parts.netloc.rpartition("@")
    if ":" in user:
        user = user.split(":", 1)[0] + ":***"
    query = "&".join(
        "password=***" if item.startswith("password=") else item for item in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, user + at + host, parts.path, query, parts.fragment))


class SharedScoreCache:
    """``key → CachedScore`` on a Valkey/Redis server shared by the replicas (see the module
    docstring for what a failure does). Made and used on one event loop."""

    def __init__(
        self,
        url: str,
        ttl_s: float | None,
        timeout_s: float,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        max_pending_writes: int = DEFAULT_MAX_PENDING_WRITES,
    ) -> None:
        self.url = redact(url)
        self.ttl_ms = None if ttl_s is None else max(1, round(ttl_s * 1000))
        self.timeout_s = timeout_s
        self.namespace = namespace
        self.max_pending_writes = max_pending_writes
        self._secret_url = url
        self._client = Redis.from_url(
            client_url(url),
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._writes: set[asyncio.Task[None]] = set()
        self._down = False
        self._rest_until = 0.0

    async def get_many(
        self, keys: Sequence[bytes], with_reasoning: bool, timeout_s: float | None = None
    ) -> list[CachedScore | None]:
        """Each key's entry, or None; all None on any failure, within ``min(timeout_s,
        self.timeout_s)``. An entry without reasoning misses when ``with_reasoning`` is asked.

        A timeout shorter than the cache's own (the caller's budget ran low) is counted but
        does not start an outage: only the cache's own deadline judges the server.
        """
        if not keys:
            return []
        if self._resting():
            metrics.SHARED_CACHE_ERRORS.labels("get", "down").inc()
            return [None] * len(keys)
        limit = self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s)
        start = time.perf_counter()
        try:
            values = await asyncio.wait_for(self._client.mget([self._name(k) for k in keys]), limit)
        except Exception as err:  # any failure is a miss: the cache is never a dependency
            judged = limit >= self.timeout_s or not isinstance(err, asyncio.TimeoutError)
            self._failed("get", err, outage=judged)
            return [None] * len(keys)
        finally:
            metrics.SHARED_CACHE_GET_SECONDS.observe(time.perf_counter() - start)
        self._answered()
        found = [decode(value, with_reasoning) for value in values]
        hits = sum(entry is not None for entry in found)
        metrics.SHARED_CACHE_HITS.inc(hits)
        metrics.SHARED_CACHE_MISSES.inc(len(found) - hits)
        return found

    def put_many(self, items: Sequence[tuple[bytes, CachedScore]]) -> None:
        """Store ``items`` in the background (one pipelined write) and return at once; call it
        from the event loop's thread. Dropped, and counted, while the server rests or when
        ``max_pending_writes`` writes are still in flight."""
        if not items:
            return
        if len(self._writes) >= self.max_pending_writes:
            metrics.SHARED_CACHE_ERRORS.labels("put", "backlog").inc()
            return
        if self._resting():
            metrics.SHARED_CACHE_ERRORS.labels("put", "down").inc()
            return
        payload = [(self._name(key), encode(value)) for key, value in items]
        task = asyncio.get_running_loop().create_task(self._write(payload))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def close(self) -> None:
        """Let the writes in flight finish (each is bounded by the timeout), then disconnect."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._client.aclose()

    async def _write(self, payload: list[tuple[str, bytes]]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for name, value in payload:
                    pipe.set(name, value, px=self.ttl_ms)
                await asyncio.wait_for(pipe.execute(), self.timeout_s)
        except Exception as err:  # a lost write only costs a later miss
            self._failed("put", err)
            return
        self._answered()

    def _name(self, key: bytes) -> str:
        return self.namespace + key.hex()

    def _resting(self) -> bool:
        return self._down and time.monotonic() < self._rest_until

    def _failed(self, op: str, err: Exception, outage: bool = True) -> None:
        reason = _reason(err)
        metrics.SHARED_CACHE_ERRORS.labels(op, reason).inc()
        if not outage:
            return
        self._rest_until = time.monotonic() + RECONNECT_AFTER_S
        if not self._down:
            self._down = True
            log.warning(
                "shared score cache %s unavailable (%s: %s); scoring without it, trying it again"
                " every %g s",
                self.url,
                reason,
                _mask(str(err) or type(err).__name__, self._secret_url),
                RECONNECT_AFTER_S,
            )

    def _answered(self) -> None:
        if self._down:
            self._down = False
            log.info("shared score cache %s answers again", self.url)


def _reason(err: Exception) -> str:
    """The ``reason`` label: a small fixed set, whatever the exception."""
    if isinstance(err, (asyncio.TimeoutError, RedisTimeoutError)):
        return "timeout"
    if isinstance(err, AuthenticationError):
        return "auth"
    if isinstance(err, (RedisConnectionError, OSError)):
        return "connection"
    return "error"


def _mask(text: str, url: str) -> str:
    """``text`` with the URL's password, as written and percent-decoded, replaced by ***."""
    password = urlsplit(url).password
    for secret in {password, unquote(password)} if password else ():
        text = text.replace(secret, "***")
    return text


def encode(value: CachedScore) -> bytes:
    """The stored value: ``[FORMAT, answer, probability, reasoning, detail, with_reasoning]``."""
    p = value.parsed
    item = [FORMAT, p.answer, p.probability, p.reasoning, p.detail, value.with_reasoning]
    # surrogatepass: a lone surrogate in decoded text must not make a write fail
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


def decode(value: bytes | str | None, with_reasoning: bool) -> CachedScore | None:
    """The entry, or None: absent, another format, unreadable, or lacking the reasoning asked."""
    if value is None:
        return None
    try:
        item = json.loads(value)  # bytes are read as UTF-8 with surrogatepass, as written
    except ValueError:
        return None
    if not (
        isinstance(item, list) and len(item) == 6 and type(item[0]) is int and item[0] == FORMAT
    ):
        return None
    _, answer, probability, reasoning, detail, has_reasoning = item
    if not (
        (answer is None or type(answer) is int)  # type(): JSON true is no answer
        and type(probability) in (int, float)
        and isinstance(reasoning, str)
        and isinstance(detail, str)
        and isinstance(has_reasoning, bool)
    ):
        return None
    if with_reasoning and not has_reasoning:
        return None
    return CachedScore(ParsedAnswer(answer, float(probability), reasoning, detail), has_reasoning)
