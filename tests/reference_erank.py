"""An independent re-implementation of ERank's reference pipeline (the model card's example code).

Written from the published description only and sharing no code with ``erank/``: the reference
``prompt_template`` (byte for byte), ``truncate``, one user message through the model's chat
template, vLLM's offline ``LLM.generate`` with greedy ``SamplingParams`` and the sampled tokens'
logprobs, the answer read after ``</think>``, rank score N × Pr(N) and the model card's z-score
hybrid. Run as a script (its own process, so its engine dies with it):

    python tests/reference_erank.py request.json response.json
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

PROMPT_TEMPLATE = """Given a query and a document, please give a relevance score of 0~10.
The goal or relevance definition is: {instruction}

Here is the query:
{query}

Here is the document:
{doc}

After thinking, directly choose a relevance score from [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].
- 0 represents completely not related
- 10 means perfectly related.

Desired output format:
<think>put your thinking here</think><answer>Only allows an integer here</answer>

Your output:"""


def truncate(tokenizer: Any, text: str, length: int) -> str:
    return tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)[:length])


def reference_prompt(tokenizer: Any, query: str, doc: str, instruction: str, length: int) -> str:
    content = PROMPT_TEMPLATE.format(
        query=truncate(tokenizer, query, length),
        doc=truncate(tokenizer, doc, length),
        instruction=instruction,
    )
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )


def answer_and_probability(
    tokenizer: Any, token_ids: list[int], logprobs: list[float]
) -> tuple[int | None, float]:
    """(N, Pr(N)) from the last <answer>N</answer> after the last </think>; (None, 0.0) if none."""
    pieces = [tokenizer.decode([t]) for t in token_ids]
    text = "".join(pieces)
    after = text.rfind("</think>")
    found = list(re.finditer(r"<answer>\s*(\d+)\s*</answer>", text[after:])) if after >= 0 else []
    if not found or int(found[-1].group(1)) > 10:
        return None, 0.0
    start, end = (after + found[-1].start(1), after + found[-1].end(1))
    total, position = 0.0, 0
    for piece, lp in zip(pieces, logprobs, strict=True):
        if position < end and position + len(piece) > start:
            total += lp
        position += len(piece)
    return int(found[-1].group(1)), math.exp(total)


def hybrid(first_stage: list[float], rank_scores: list[float], alpha: float) -> list[float]:
    import numpy as np

    def z(x: list[float]) -> Any:
        a = np.asarray(x, dtype=np.float64)
        sd = a.std()
        return np.zeros_like(a) if sd == 0 else (a - a.mean()) / sd

    return list(alpha * z(first_stage) + (1 - alpha) * z(rank_scores))


def main(request_path: str, response_path: str) -> None:
    from vllm import LLM, SamplingParams

    with open(request_path) as f:
        req = json.load(f)
    llm = LLM(model=req["model"], dtype="float32", enforce_eager=True, seed=0)
    tokenizer = llm.get_tokenizer()
    prompts = [
        reference_prompt(tokenizer, req["query"], doc, req["instruction"], req["truncate_length"])
        for doc in req["documents"]
    ]
    params = SamplingParams(temperature=0.0, max_tokens=req["max_tokens"], logprobs=0)
    outputs = llm.generate(prompts, params)
    results = []
    for out in outputs:
        done = out.outputs[0]
        ids = list(done.token_ids)
        lps = [step[t].logprob for step, t in zip(done.logprobs, ids, strict=True)]
        answer, probability = answer_and_probability(tokenizer, ids, lps)
        results.append(
            {
                "prompt_ids": list(out.prompt_token_ids),
                "token_ids": ids,
                "answer": answer,
                "probability": probability,
                "rank_score": 0.0 if answer is None else answer * probability,
            }
        )
    fused = hybrid(req["first_stage"], [r["rank_score"] for r in results], req["alpha"])
    for r, h in zip(results, fused, strict=True):
        r["hybrid"] = h
    order = sorted(range(len(results)), key=lambda i: (-fused[i], i))
    with open(response_path, "w") as f:
        json.dump({"results": results, "order": order}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
