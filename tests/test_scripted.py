"""Provable score arithmetic: hand-set checkpoints whose answers and probabilities we compute.

A scripted checkpoint is a bigram chain (erank/checkpoints.py): attention and MLP write zeros, so
the next-token distribution depends only on the current token, through embedding → final RMSNorm
→ lm_head. The expected probabilities below are computed here with numpy from the saved weights,
independently of vLLM and of the model code; the server must report exactly those.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import engine_settings
from grpc_health.v1 import health_pb2
from safetensors.numpy import load_file

from erank.backends.base import load_tokenizer
from erank.server import ScoringServer, running_server
from erank_contract.client import AsyncRerankerClient, RerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine


class BigramChain:
    """The checkpoint's next-token distribution, recomputed from its weights with numpy."""

    def __init__(self, path: Path) -> None:
        w = load_file(str(path / "model.safetensors"))
        config = json.loads((path / "config.json").read_text())
        for name, tensor in w.items():  # the premise: attention and MLP contribute nothing
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                assert not tensor.any(), name
        self.embed = w["model.embed_tokens.weight"].astype(np.float64)
        self.norm = w["model.norm.weight"].astype(np.float64)
        self.head = w["lm_head.weight"].astype(np.float64)
        self.eps = float(config["rms_norm_eps"])
        self.tokenizer = load_tokenizer(str(path), None)

    def distribution(self, token: int) -> np.ndarray:
        h = self.embed[token]
        h = h / np.sqrt(np.mean(h * h) + self.eps) * self.norm
        logits = self.head @ h
        p = np.exp(logits - logits.max())
        return p / p.sum()

    def token(self, text: str) -> int:
        (t,) = self.tokenizer.encode(text, add_special_tokens=False)
        return int(t)

    def prob(self, prev: str, nxt: str) -> float:
        return float(self.distribution(self.token(prev))[self.token(nxt)])


async def test_answer_seven_and_its_probability(
    scripted7_server: ScoringServer, scripted7_checkpoint: Path
) -> None:
    chain = BigramChain(scripted7_checkpoint)
    expected = chain.prob("<answer>", "7")  # the step after "<answer>" (one token here)
    assert 0.5 < expected < 0.9  # logits 8 vs 7 vs ~1000 zeros: far from certain
    async with AsyncRerankerClient(f"127.0.0.1:{scripted7_server.port}") as client:
        response = await client.rerank(
            pb.RerankRequest(
                query="I am happy",
                documents=[pb.Document(id="a", text="excited"), pb.Document(id="b", text="sad")],
                return_reasoning=True,
            )
        )
    for r in response.results:
        assert r.status == pb.RESULT_STATUS_OK
        assert r.answer == 7
        assert r.answer_probability == pytest.approx(expected, abs=1e-4)
        assert r.rank_score == pytest.approx(7 * expected, abs=1e-3)
        assert r.reasoning == "<think>scripted</think>"
    # Equal scores: ties keep input order.
    assert [r.id for r in response.results] == ["a", "b"]
    # Exactly the scripted tokens, up to and including the end-of-turn token (no stop string).
    script = chain.tokenizer.encode(
        "<think>scripted</think><answer>7</answer><|im_end|>", add_special_tokens=False
    )
    assert response.usage.generated_tokens == 2 * len(script)


async def test_cut_off_generation_has_no_answer_and_scores_zero(
    scripted7_server: ScoringServer,
) -> None:
    """Same engine, a server whose max_new_tokens ends the script before </answer>."""
    short = engine_settings(Path(scripted7_server.settings.model), max_new_tokens=6)
    assert scripted7_server.backend is not None
    async with (
        running_server(short, scripted7_server.backend) as server,
        AsyncRerankerClient(f"127.0.0.1:{server.port}") as client,
    ):
        response = await client.rerank(
            pb.RerankRequest(
                query="q",
                documents=[
                    pb.Document(id="a", text="t", first_stage_score=3.0),
                    pb.Document(id="b", text="u", first_stage_score=1.0),
                ],
            )
        )
    for r in response.results:
        assert r.status == pb.RESULT_STATUS_NO_ANSWER
        assert r.rank_score == 0.0 and r.answer_probability == 0.0
        assert "max_new_tokens" in r.status_detail
    # Fusion still works: equal (zero) rank scores have z 0, so BM25 decides.
    assert [r.id for r in response.results] == ["a", "b"]
    assert response.results[0].hybrid_score == pytest.approx(0.2)


def _health(port: int) -> int | None:
    try:
        with RerankerClient(f"127.0.0.1:{port}") as client:
            return client.health("", timeout=2)
    except grpc.RpcError:
        return None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_erank_serve_cli_two_digit_answer_health_and_shutdown(
    scripted10_checkpoint: Path,
) -> None:
    """`erank serve` as users run it: NOT_SERVING while loading, SERVING after warm-up."""
    chain = BigramChain(scripted10_checkpoint)
    expected = chain.prob("<answer>", "1") * chain.prob("1", "0")
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "erank_cli",
        "serve",
        "--model",
        str(scripted10_checkpoint),
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-new-tokens",
        "64",
    ]
    proc = subprocess.Popen(
        cmd, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen: list[int | None] = []
    try:
        for _ in range(600):
            status = await asyncio.to_thread(_health, port)
            seen.append(status)
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            await asyncio.sleep(0.5)
        assert seen[-1] == health_pb2.HealthCheckResponse.SERVING
        assert health_pb2.HealthCheckResponse.NOT_SERVING in seen  # port opened before warm-up
        async with AsyncRerankerClient(f"127.0.0.1:{port}") as client:
            response = await client.rerank(
                pb.RerankRequest(query="q", documents=[pb.Document(id="a", text="t")])
            )
        (r,) = response.results
        assert (r.answer, r.status) == (10, pb.RESULT_STATUS_OK)
        assert r.answer_probability == pytest.approx(expected, abs=1e-4)
        assert r.rank_score == pytest.approx(10 * expected, abs=1e-3)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
