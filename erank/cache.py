"""The score cache: a document scored once is never paid for again (pagination, repeated queries).

The key hashes everything a score depends on: model id, revision, template version, scoring mode
(with its budget), ``max_new_tokens``, and the prompt's token ids, which hold the instruction, the
truncated query and the truncated document inside the template. So a changed instruction,
truncation or mode misses, and a document too short to be cut by either truncate_length hits
(its prompt, and so its score, is the same). Bounded by entries and by estimated bytes, least
recently used out first; optionally entries expire ``ttl_s`` after they were stored. One cache
per scoring server, on its event loop (no locking).
"""

from __future__ import annotations

import hashlib
import json
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from erank import metrics
from erank.score import ParsedAnswer

_ENTRY_OVERHEAD = 240  # bytes: the entry's objects and the dict slot, roughly


@dataclass(frozen=True)
class CachedScore:
    """What a hit returns: the parsed answer (with reasoning only if it was decoded)."""

    parsed: ParsedAnswer
    with_reasoning: bool


def key_prefix(*parts: object) -> hashlib.blake2b:
    """A hash of the parts shared by every prompt of a request; ``copy()`` it per prompt."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(parts, default=str).encode())
    return h


def score_key(prefix: hashlib.blake2b, prompt_ids: Sequence[int]) -> bytes:
    h = prefix.copy()
    h.update(array("q", prompt_ids).tobytes())
    return h.digest()


class ScoreCache:
    """LRU of ``key → CachedScore`` bounded by ``max_entries`` and ``max_bytes``."""

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        ttl_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self.bytes = 0
        self._entries: OrderedDict[bytes, tuple[CachedScore, float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, with_reasoning: bool = False) -> CachedScore | None:
        """The entry, or None (also when it expired or lacks the reasoning asked for)."""
        entry = self._entries.get(key)
        if entry is not None and self.ttl_s is not None and self.clock() >= entry[1]:
            self._drop(key)
            entry = None
        if entry is None or (with_reasoning and not entry[0].with_reasoning):
            metrics.CACHE_MISSES.inc()
            return None
        self._entries.move_to_end(key)
        metrics.CACHE_HITS.inc()
        return entry[0]

    def put(self, key: bytes, value: CachedScore) -> None:
        size = _size(key, value)
        if self.max_entries == 0 or size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key, evicted=False)
        expires = self.clock() + self.ttl_s if self.ttl_s is not None else float("inf")
        self._entries[key] = (value, expires, size)
        self.bytes += size
        metrics.CACHE_ENTRIES.inc()
        metrics.CACHE_BYTES.inc(size)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        for key in list(self._entries):
            self._drop(key, evicted=False)

    def _drop(self, key: bytes, evicted: bool = True) -> None:
        _, _, size = self._entries.pop(key)
        self.bytes -= size
        metrics.CACHE_ENTRIES.dec()
        metrics.CACHE_BYTES.dec(size)
        if evicted:
            metrics.CACHE_EVICTIONS.inc()


def _size(key: bytes, value: CachedScore) -> int:
    p = value.parsed
    return _ENTRY_OVERHEAD + len(key) + len(p.reasoning.encode()) + len(p.detail.encode())
