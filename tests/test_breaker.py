"""The scoring server's circuit breaker as a state machine: when it opens, what it lets through,
how it recovers, and how its config is checked. The time is a clock the test moves (the breaker
takes any monotonic clock); the errors are real gRPC errors. Its behaviour on a real proxy, engine
and scoring server is in tests/proxy_breaker.py."""

from __future__ import annotations

import logging
import threading

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from connector.rewrite.breaker import Breaker, BreakerConfig
from connector.rewrite.config import ConfigError, parse_config


def rpc_error(code: grpc.StatusCode) -> AioRpcError:
    return AioRpcError(code, Metadata(), Metadata(), details="from the test")


UNAVAILABLE = rpc_error(grpc.StatusCode.UNAVAILABLE)


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(
    failures: int = 3, cooldown_ms: int = 1000, health_interval_ms: int = 1000
) -> tuple[Breaker, Clock]:
    clock = Clock()
    config = BreakerConfig(
        failures=failures, cooldown_ms=cooldown_ms, health_interval_ms=health_interval_ms
    )
    return Breaker(config, clock), clock


def fail(b: Breaker, times: int, exc: BaseException = UNAVAILABLE) -> None:
    for _ in range(times):
        assert b.admit()
        b.record(exc)


def test_opens_after_consecutive_trouble_and_refuses_until_the_cooldown() -> None:
    b, clock = breaker(failures=3, cooldown_ms=1000)
    fail(b, 2)
    assert b.state == "closed"
    fail(b, 1, rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert b.state == "open" and b.opens == 1
    assert not b.admit() and not b.admit()
    assert b.short_circuited == 2 and b.retry_in_ms() == 1000
    clock.now += 0.4
    assert not b.admit() and b.retry_in_ms() == 600
    assert b.as_json() == {
        "state": "open",
        "consecutive_failures": 3,
        "opens": 1,
        "short_circuited": 3,
        "failures": 3,
        "cooldown_ms": 1000,
        "health_interval_ms": 1000,
    }


@pytest.mark.parametrize(
    "exc",
    [
        rpc_error(grpc.StatusCode.INVALID_ARGUMENT),  # a bad request: the server answered
        rpc_error(grpc.StatusCode.UNAUTHENTICATED),
        ValueError("a malformed ranking"),
        None,
    ],
)
def test_answers_reset_the_count(exc: BaseException | None) -> None:
    b, _ = breaker(failures=3)
    fail(b, 2)
    assert b.admit()
    b.record(exc)
    fail(b, 2)
    assert b.state == "closed" and b.consecutive == 2


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
    ],
)
def test_trouble_kinds_open_it(code: grpc.StatusCode) -> None:
    b, _ = breaker(failures=2)
    fail(b, 2, rpc_error(code))
    assert b.state == "open"


def test_timeouts_open_it() -> None:
    b, _ = breaker(failures=2)
    fail(b, 2, TimeoutError())
    assert b.state == "open"


def test_half_open_lets_one_trial_through_which_closes_or_reopens_it() -> None:
    b, clock = breaker(failures=2, cooldown_ms=500)
    fail(b, 2)
    clock.now += 0.5
    assert b.admit() and b.state == "half_open"
    assert not b.admit()  # the trial is under way: the others still fail open at once
    b.record(UNAVAILABLE)
    assert b.state == "open" and b.opens == 2 and not b.admit()
    clock.now += 0.5
    assert b.admit()
    b.record(None)
    assert b.state == "closed" and b.consecutive == 0
    assert all(b.admit() for _ in range(5))


def test_a_trial_waits_for_the_servers_health_to_say_serving() -> None:
    """A trial whose health check is not SERVING (the model still loads) makes no call and does
    not reopen the breaker: half-open still, the next trial after ``health_interval_ms``, not a
    whole cool-down later; the first SERVING trial's call closes it."""
    b, clock = breaker(failures=1, cooldown_ms=30_000, health_interval_ms=200)
    fail(b, 1)
    clock.now += 30
    for _ in range(3):  # loading: each trial's health says NOT_SERVING
        assert b.admit() == "trial" and b.admit() is None
        b.not_serving()
        assert b.state == "half_open" and b.opens == 1 and b.retry_in_ms() == 200
        clock.now += 0.1
        assert b.admit() is None and b.retry_in_ms() == 100
        clock.now += 0.1
    assert b.admit() == "trial"  # SERVING: the call is made
    b.record(None)
    assert b.state == "closed" and b.admit() == "call"


def test_a_trial_never_reported_frees_the_slot_after_a_cooldown() -> None:
    """A search cancelled mid-trial (its client went away) must not wedge the breaker."""
    b, clock = breaker(failures=1, cooldown_ms=500)
    fail(b, 1)
    clock.now += 0.5
    assert b.admit()  # the trial, never recorded
    clock.now += 0.4
    assert not b.admit()
    clock.now += 0.1
    assert b.admit()


def test_zero_failures_turns_it_off() -> None:
    b, _ = breaker(failures=0)
    fail(b, 100)
    assert b.state == "closed" and b.as_json()["state"] == "disabled"


def test_state_changes_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    b, clock = breaker(failures=2, cooldown_ms=250)
    with caplog.at_level(logging.INFO, logger="erank.proxy"):
        fail(b, 2)
        for _ in range(50):
            b.admit()
        clock.now += 0.25
        assert b.admit()
        b.record(None)
    changes = [r.getMessage() for r in caplog.records]
    assert len(changes) == 3, changes
    assert "breaker open" in changes[0] and "for 0.25 s" in changes[0]
    assert "half-open" in changes[1] and "closed" in changes[2]


def test_threads_share_one_breaker() -> None:
    """The blocking wrappers call from any thread: counts add up, one open, one log line."""
    b, _ = breaker(failures=10, cooldown_ms=60_000)

    def calls() -> None:
        for _ in range(100):
            if b.admit():
                b.record(UNAVAILABLE)

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.opens == 1 and b.short_circuited + b.consecutive == 800


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ({"failures": -1}, "[scoring_server.breaker.failures] Input should be greater than or"),
        ({"cooldown_ms": 0}, "[scoring_server.breaker.cooldown_ms] Input should be greater"),
        ({"cooldown_ms": 10**12}, "[scoring_server.breaker.cooldown_ms] Input should be less"),
        ({"failures": "many"}, "[scoring_server.breaker.failures] Input should be a valid int"),
        ({"cooldown": 5}, "[scoring_server.breaker.cooldown] Extra inputs are not permitted"),
        ({"health_interval_ms": 0}, "[scoring_server.breaker.health_interval_ms] Input should"),
    ],
)
def test_bad_breaker_config_names_the_key(section: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"scoring_server": {"breaker": section}})
    assert words in str(caught.value)


def test_breaker_config_defaults_and_tls_keys_side_by_side() -> None:
    config = parse_config({"scoring_server": {"tls": True, "breaker": {"failures": 2}}})
    assert config.scoring_server.uses_tls
    assert config.scoring_server.breaker == BreakerConfig(failures=2, cooldown_ms=30_000)
    assert parse_config(None).scoring_server.breaker == BreakerConfig(failures=5)
