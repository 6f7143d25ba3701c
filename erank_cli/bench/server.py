"""``erank bench server``: the scoring server under load, beside raw vLLM on prompts of the
same shape.

For every documents-per-request size and every concurrency level, requests go through the server
over gRPC and, in the same run, prompts of the same token lengths straight into the server's own
``AsyncLLM`` (erank_cli/bench/load.py). Each pass gets its own new queries and documents
(``Corpus``): a pass that ran second would otherwise find every prompt of the first in vLLM's
prefix cache and run ~1.8× faster on this machine, whichever path it was. The passes alternate
(``rounds`` times, the order flipped each round) so a noisy neighbour on a shared machine hits
both alike; every round is kept, and the ratios are the medians of the rounds' own ratios (cold
pass against cold pass): server ÷ raw docs/s (aim ≥ 0.95) and p50 latency (aim ≤ 1.10).

``paths`` names the two passes; the same path twice (``raw,raw``) measures the bench itself,
whose ratio must then be 1.00 within the machine's noise (tests/test_bench.py).

The server runs in this process on a model given by path or id; without one, a tiny scripted
checkpoint that writes a fixed number of reasoning tokens and then answers (erank/checkpoints.py),
so the output length is controlled. ``target`` measures a server elsewhere instead (gRPC only,
no raw comparison: its engine is out of reach).
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

from erank.settings import ServerSettings
from erank_cli.bench.harness import (
    SCRIPT_OVERHEAD_TOKENS,
    connected,
    environment,
    finished,
    scripted_model,
)
from erank_cli.bench.load import Corpus, Pass, raw_pass, server_pass, summary

PATHS = ("server", "raw")
Runner = Callable[[Sequence[Any], int], Awaitable[Pass]]


@dataclass(frozen=True)
class ServerBench:
    """What to measure; see ``erank bench server --help`` for each field."""

    docs: tuple[int, ...] = (10, 100)
    doc_tokens: int = 80
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    output_tokens: int = 64
    min_docs: int = 200  # documents per level and pass at least (more requests at small sizes)
    rounds: int = 2
    paths: tuple[str, ...] = PATHS  # one or two of PATHS; the same twice measures the bench
    model: str | None = None
    target: str | None = None
    enforce_eager: bool = False
    dtype: str = "float32"
    max_num_seqs: int | None = None
    load_format: str | None = None  # "dummy": random weights in the model's shape (no download)
    gpu_memory_utilization: float = 0.9

    def __post_init__(self) -> None:
        if not 1 <= len(self.paths) <= 2 or not set(self.paths) <= set(PATHS):
            raise ValueError(f"paths: one or two of {', '.join(PATHS)}, got {self.paths}")
        if self.target is not None and "raw" in self.paths:
            raise ValueError("paths: a server elsewhere (target) has no raw path")

    def requests(self, docs: int, concurrency: int) -> int:
        """Requests per pass at one level: every worker busy, and at least ``min_docs``."""
        return max(concurrency, -(-self.min_docs // docs))

    def labels(self) -> tuple[str, ...]:
        """The passes' names: the paths, or ``raw-a``/``raw-b`` for the same path twice."""
        if len(self.paths) == 2 and self.paths[0] == self.paths[1]:
            return (f"{self.paths[0]}-a", f"{self.paths[0]}-b")
        return self.paths


def settings_for(bench: ServerBench) -> ServerSettings:
    """Server settings: port 0, score cache off (every request is new anyway)."""
    fields: dict[str, Any] = dict(
        model=bench.model or scripted_model(max(1, bench.output_tokens - SCRIPT_OVERHEAD_TOKENS)),
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


async def run(bench: ServerBench, server: Any | None = None) -> dict[str, Any]:
    """Measure every level on ``server`` (a running in-process ``ScoringServer``), else on
    ``bench.target``, else on a server started here; the results as JSON."""
    env = environment()
    async with connected(lambda: settings_for(bench), server, bench.target) as (server, channel):
        if server is not None:
            s = server.settings
            settings = {"model": s.model, "max_new_tokens": s.max_new_tokens}
            tokenizer = server.backend.tokenizer
        else:
            from transformers import AutoTokenizer

            settings = await _model_info(channel)
            tokenizer = AutoTokenizer.from_pretrained(settings["model"])
        levels = await measure(bench, channel, tokenizer, server)
    return {**finished(env), "bench": asdict(bench), "server": settings, "levels": levels}


async def _model_info(channel: grpc.aio.Channel) -> dict[str, Any]:
    from erank_contract.v1 import reranker_pb2 as pb
    from erank_contract.v1 import reranker_pb2_grpc as pb_grpc

    info = await pb_grpc.RerankerStub(channel).GetModelInfo(pb.GetModelInfoRequest())
    return {"model": info.model, "max_new_tokens": info.max_new_tokens}


async def measure(
    bench: ServerBench, channel: grpc.aio.Channel, tokenizer: Any, server: Any | None
) -> list[dict[str, Any]]:
    """Every (docs, concurrency) level: the passes alternating, each on its own requests.

    A warm-up request of each size goes first on every pass (compilation of new batch shapes);
    it shares no text with what is measured.
    """
    runners = _runners(bench, channel, server)
    corpus = Corpus(tokenizer, bench.doc_tokens)
    levels = []
    for docs in bench.docs:
        for runner in runners.values():
            await runner(corpus.requests(1, docs), 1)
        for concurrency in bench.concurrency:
            levels.append(await _level(bench, runners, corpus, docs, concurrency))
    return levels


def _runners(
    bench: ServerBench, channel: grpc.aio.Channel, server: Any | None
) -> dict[str, Runner]:
    """One pass runner per label: over gRPC, or the server's own engine directly."""

    async def over_grpc(requests: Sequence[Any], concurrency: int) -> Pass:
        return await server_pass(channel, requests, concurrency)

    raw = _RawEngine(server) if "raw" in bench.paths else None
    by_path: dict[str, Runner] = {"server": over_grpc}
    if raw is not None:
        by_path["raw"] = raw.run
    return {label: by_path[path] for label, path in zip(bench.labels(), bench.paths, strict=True)}


async def _level(
    bench: ServerBench, runners: dict[str, Runner], corpus: Corpus, docs: int, concurrency: int
) -> dict[str, Any]:
    """``bench.rounds`` rounds at one level; each pass on new requests of the same shape, the
    first pass of each round alternating between the labels."""
    labels = list(runners)
    count = bench.requests(docs, concurrency)
    rounds = []
    for r in range(bench.rounds):
        sets = {label: corpus.requests(count, docs) for label in labels}
        corpus.check_same_shape(list(sets.values()))
        order = labels if r % 2 == 0 else labels[::-1]
        one: dict[str, Any] = {"round": r + 1, "order": order}
        for label in order:
            one[label] = summary(await runners[label](sets[label], concurrency))
        if len(labels) == 2:
            one.update(_ratios(one[labels[0]], one[labels[1]]))
            one["second_over_first_docs_per_s"] = (
                one[order[1]]["docs_per_s"] / one[order[0]]["docs_per_s"]
            )
        rounds.append(one)
    return _level_result(docs, concurrency, labels, rounds)


def _ratios(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {
        "ratio_docs_per_s": a["docs_per_s"] / b["docs_per_s"],
        "ratio_p50": a["p50_ms"] / b["p50_ms"],
        "extra_cpu_ms_per_doc": a["cpu_ms_per_doc"] - b["cpu_ms_per_doc"],
    }


def _level_result(
    docs: int, concurrency: int, labels: list[str], rounds: list[dict[str, Any]]
) -> dict[str, Any]:
    """Each label's medians over the rounds, the medians of the rounds' ratios, every round."""
    level: dict[str, Any] = {"docs": docs, "concurrency": concurrency, "paths": labels}
    for label in labels:
        level[label] = _merge([rd[label] for rd in rounds])
    if len(labels) == 2:
        keys = ("ratio_docs_per_s", "ratio_p50", "extra_cpu_ms_per_doc")
        level.update({k: statistics.median(rd[k] for rd in rounds) for k in keys})
        level["second_over_first_docs_per_s"] = statistics.median(
            rd["second_over_first_docs_per_s"] for rd in rounds
        )
    level["rounds"] = rounds
    return level


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

    async def run(self, requests: Sequence[Any], concurrency: int) -> Pass:
        prompts = [self.prompts(r) for r in requests]  # built before the clock starts
        return await raw_pass(self.engine, self.params, prompts, concurrency)


def _merge(passes: list[dict[str, float]]) -> dict[str, float]:
    """Rounds of one path at one level: medians of rates and percentiles, the round values kept."""
    merged: dict[str, Any] = {k: statistics.median(p[k] for p in passes) for k in passes[0]}
    merged["rounds_docs_per_s"] = [p["docs_per_s"] for p in passes]
    return merged


def write(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """JSON and PNG under ``out`` (a folder); returns their paths."""
    import json

    from erank_cli.bench.report import plot_server

    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "server.json", out / "server.png"
    json_path.write_text(json.dumps(result, indent=2))
    plot_server(result, png_path)
    return json_path, png_path
