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
import functools
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Protocol, TypeVar, runtime_checkable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
ENGINE_POLL_S = 0.2  # how soon a dead engine turns the server NOT_SERVING
CHILD_EXIT_S = 5.0  # engine processes of a cut-short load get this long after SIGTERM
T = TypeVar("T")


@runtime_checkable
class Mortal(Protocol):
    """A backend whose engine can die while the server lives (vLLM's engine-core process)."""

    def dead(self) -> str | None:
        """Why the engine can no longer generate, or None while it can."""
        ...


def engine_failure(backend: object) -> str | None:
    """Why ``backend``'s engine died, or None (always None for in-process engines)."""
    return backend.dead() if isinstance(backend, Mortal) else None


@contextlib.contextmanager
def stop_signal() -> Iterator[asyncio.Event]:
    """An event set on SIGINT or SIGTERM however busy the running loop is; the previous
    handlers come back on exit.

    Not ``loop.add_signal_handler``: asyncio's handler only writes the signal's number into the
    loop's wake-up pipe and acts when the loop reads it back. Under load other threads fill that
    pipe with ``call_soon_threadsafe`` wake-ups, the number is dropped (``Exception ignored when
    trying to write to the signal wakeup fd … BlockingIOError``) and the signal with it. Python
    runs a plain handler in the main thread, the loop's, at its next bytecode whatever the pipe
    holds; ``call_soon_threadsafe`` then hands the event to the loop (a full pipe wakes it anyway).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(stop.set)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


async def unless_stopped(work: asyncio.Future[None], stop: asyncio.Event) -> bool:
    """Waits for ``work`` or ``stop``; True if ``work`` finished (its errors raised), False if
    ``stop`` came first (``work`` is then cancelled)."""
    stopped = asyncio.ensure_future(_waited(stop))
    try:
        await asyncio.wait([work, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not work.done():
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        return False
    work.result()
    return True


async def _waited(event: asyncio.Event) -> None:
    await event.wait()


async def in_daemon_thread(function: Callable[[], T]) -> T:
    """``function()`` in a thread of its own that the process does not wait for at exit
    (``asyncio.to_thread``'s pool is joined at exit: a stop while the engine loads would wait
    for the load to finish)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not done.done():
            outcome()

    def run() -> None:
        try:
            result = function()
            outcome = functools.partial(done.set_result, result)
        except BaseException as err:  # handed to the awaiting task
            outcome = functools.partial(done.set_exception, err)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name="erank-load", daemon=True).start()
    return await done


def end_child_processes() -> None:
    """Ends the engine processes this process started (vLLM's engine core, whose workers follow
    it): a load cut short by a stop signal leaves them starting, with no backend to stop them."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(CHILD_EXIT_S)
        if child.is_alive():
            child.kill()
            child.join(CHILD_EXIT_S)


async def wait_for_stop(stop: asyncio.Event, backend: object) -> str | None:
    """Returns None once ``stop`` is set, or why the engine died if it dies first."""
    while not stop.is_set():
        failure = engine_failure(backend)
        if failure is not None:
            return failure
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), ENGINE_POLL_S)
    return None
