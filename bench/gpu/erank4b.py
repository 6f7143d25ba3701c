"""ERank-4B's shape on one GPU: the server against raw vLLM, and the hardware floor beside it.

NOT RUN YET: no GPU was lent while this was written (bench/RESULTS.md says so). Meant for one
H100 or H200 (other GPUs: pass --peak-tflops and --bandwidth-tbs), in under 8 minutes.

The model is Qwen3-4B's configuration (ERank-4B is a Qwen3-4B fine-tune) with random weights
(vLLM's ``dummy`` load format: nothing is downloaded) and the real Qwen3 tokenizer and chat
template (erank/qwen3_tokenizer.py; the machine needs it cached, see --tokenizer-dir). Random
weights rarely write the end-of-turn token, so every document generates ``--output-tokens``
(410, ERank-4B's mean) and is cut there: the speed of full scoring, not its answers.

``erank bench server`` (erank_cli/bench/server.py) does the measuring: the same requests through the
gRPC server and straight into the same ``AsyncLLM``, alternating. Beside each level this prints
the floor for the work done: compute, FLOPs ≈ 2 × parameters × (prompt + generated tokens) at
the GPU's dense bf16 rate; memory, the weight bytes read once per decode step (one step per
generated token of the longest sequence in a batch of at most ``max_num_seqs``) over its memory
bandwidth; the floor is the larger of the two (attention and KV-cache reads are left out, so it
is a lower bound).

    python bench/gpu/erank4b.py [--docs 100,1000] [--concurrency 1,4] [--out bench/out/gpu]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

# Qwen/Qwen3-4B's config.json (the architecture of Alibaba-NLP/ERank-4B).
QWEN3_4B: dict[str, Any] = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 2560,
    "initializer_range": 0.02,
    "intermediate_size": 9728,
    "max_position_embeddings": 40960,
    "max_window_layers": 36,
    "num_attention_heads": 32,
    "num_hidden_layers": 36,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
# Dense bf16 tensor-core TFLOP/s and memory TB/s from NVIDIA's SXM data sheets.
GPUS = {"H100": (989.0, 3.35), "H200": (989.0, 4.8)}


def parameters(c: dict[str, Any]) -> int:
    """Weights of the config (tied embeddings counted once)."""
    h, layers = c["hidden_size"], c["num_hidden_layers"]
    q = c["num_attention_heads"] * c["head_dim"]
    kv = c["num_key_value_heads"] * c["head_dim"]
    attention = h * q + 2 * h * kv + q * h + 2 * c["head_dim"]  # + q/k norms
    mlp = 3 * h * c["intermediate_size"]
    return c["vocab_size"] * h + layers * (attention + mlp + 2 * h) + h


def model_dir(out: Path, tokenizer_dir: Path) -> Path:
    """config.json + the Qwen3 tokenizer files: enough for vLLM's dummy loader."""
    path = out / "erank4b-shape"
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(QWEN3_4B, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, path / name)
    return path


def floor_s(
    level: dict[str, Any],
    path: str,
    prompt_tokens: int,
    output_tokens: int,
    params: int,
    peak_flops: float,
    bandwidth: float,
    max_num_seqs: int,
) -> float:
    """Lower bound on one pass of a level: max(compute, weight reads)."""
    seqs = level[path]["requests"] * level["docs"]
    flops = 2 * params * seqs * (prompt_tokens + output_tokens)
    steps = output_tokens * math.ceil(seqs / max_num_seqs)
    return max(flops / peak_flops, steps * 2 * params / bandwidth)


def floors(result: dict[str, Any], name: str, tflops: float, tbs: float, args: Any) -> None:
    """Print (and store in ``result``) each level's floor beside its measurement."""
    params = parameters(QWEN3_4B)
    prompt = 150 + args.doc_tokens  # template + instruction + query ≈ 150 tokens (Qwen3)
    result["gpu"] = {
        "name": name,
        "peak_bf16_tflops": tflops,
        "bandwidth_tbs": tbs,
        "parameters": params,
    }
    print(f"{name}: {params / 1e9:.2f} B parameters, {tflops} TFLOP/s bf16, {tbs} TB/s")
    print(f"{'docs':>5} {'conc':>4} {'path':>6} {'docs/s':>8} {'floor docs/s':>12} {'÷ floor':>8}")
    for level in result["levels"]:
        for path in ("server", "raw"):
            floor = floor_s(
                level,
                path,
                prompt,
                args.output_tokens,
                params,
                tflops * 1e12,
                tbs * 1e12,
                args.max_num_seqs,
            )
            seqs = level[path]["requests"] * level["docs"]
            level[path]["floor_docs_per_s"] = seqs / floor
            measured = level[path]["docs_per_s"]
            print(
                f"{level['docs']:>5} {level['concurrency']:>4} {path:>6} {measured:>8.1f} "
                f"{seqs / floor:>12.1f} {measured * floor / seqs:>8.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", default="100,1000")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--doc-tokens", type=int, default=200)
    parser.add_argument("--output-tokens", type=int, default=410)
    parser.add_argument("--max-num-seqs", type=int, default=1024)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument(
        "--tokenizer-dir",
        type=Path,
        default=None,
        help="folder with Qwen3's tokenizer.json [erank's cache; fetched if absent]",
    )
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--bandwidth-tbs", type=float, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/out/gpu"))
    args = parser.parse_args()

    import torch

    from erank.qwen3_tokenizer import qwen3_tokenizer_dir
    from erank_cli.bench.report import plot_server, server_table
    from erank_cli.bench.server import ServerBench, run

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this script measures GPU speed only (never report CPU time)")
    name = torch.cuda.get_device_name(0)
    known = next((v for k, v in GPUS.items() if k in name), None)
    tflops = args.peak_tflops or (known[0] if known else None)
    tbs = args.bandwidth_tbs or (known[1] if known else None)
    if tflops is None or tbs is None:
        raise SystemExit(f"{name}: give --peak-tflops and --bandwidth-tbs")
    model = model_dir(args.out, args.tokenizer_dir or qwen3_tokenizer_dir())
    bench = ServerBench(
        docs=tuple(int(d) for d in args.docs.split(",")),
        doc_tokens=args.doc_tokens,
        concurrency=tuple(int(c) for c in args.concurrency.split(",")),
        output_tokens=args.output_tokens,
        min_docs=100,
        rounds=1,
        model=str(model),
        dtype="bfloat16",
        max_num_seqs=args.max_num_seqs,
        load_format="dummy",
        gpu_memory_utilization=args.gpu_memory_utilization,
    )
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    result = asyncio.run(run(bench))
    floors(result, name, tflops, tbs, args)
    from rich.console import Console

    Console().print(server_table(result))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2))
    plot_server(result, args.out / "gpu.png")
    print(f"wrote {args.out / 'gpu.json'} and {args.out / 'gpu.png'}")


if __name__ == "__main__":
    main()
