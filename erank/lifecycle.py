"""How a scoring server ends: on a stop signal, or when its engine dies.

Either way the same sequence runs (``ScoringServer.shutdown``): health turns NOT_SERVING while
calls are still accepted for ``shutdown_drain_s`` (load balancers and Kubernetes readiness
probes need that long to take the server out of rotation); then new calls are refused with
UNAVAILABLE (clients retry those elsewhere) while calls in flight get ``shutdown_grace_s`` to
finish; only then does gRPC stop (a call that reaches a stopping gRPC server ends CANCELLED,
which no client retries), and the engine after it.

An engine that dies (its process killed, out of memory) cannot come back inside this process,
and a server that keeps saying SERVING while every call fails is worse than none: the server
shuts down and ``erank serve`` exits with status 1, so a supervisor restarts it. Engines that
run in processes of their own say whether they died through ``Mortal``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Protocol, runtime_checkable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
ENGINE_POLL_S = 0.2  # how soon a dead engine turns the server NOT_SERVING


@runtime_checkable
class Mortal(Protocol):
    """A backend whose engine can die while the server lives (vLLM's engine-core process)."""

    def dead(self) -> str | None:
        """Why the engine can no longer generate, or None while it can."""
        ...


def engine_failure(backend: object) -> str | None:
    """Why ``backend``'s engine died, or None (always None for in-process engines)."""
    return backend.dead() if isinstance(backend, Mortal) else None


def stop_signal() -> asyncio.Event:
    """An event the running loop sets on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    return stop


async def wait_for_stop(stop: asyncio.Event, backend: object) -> str | None:
    """Returns None once ``stop`` is set, or why the engine died if it dies first."""
    while not stop.is_set():
        failure = engine_failure(backend)
        if failure is not None:
            return failure
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), ENGINE_POLL_S)
    return None
