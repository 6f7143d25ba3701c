"""The scoring pipeline of one request: prompts → engine → answers → ranked response.

Backend-agnostic: any ``Backend`` (engine.py) that returns greedy generations with the sampled
tokens' logprobs gets the same prompt, parse and score.
"""

from __future__ import annotations

from erank.engine import Backend, Generation
from erank.prompt import PromptBuilder
from erank.ranking import Scored, rank
from erank.score import ParsedAnswer, parse_answer
from erank.settings import ServerSettings
from erank.v1 import reranker_pb2 as pb
from erank.validation import InvalidRequest, RerankParams, Violation, validate

_ANSWER_TAIL_TOKENS = 24  # covers "<answer> 10 </answer>" however a tokenizer splits it


class Scorer:
    """Scores requests with one backend under one set of server settings."""

    def __init__(self, backend: Backend, settings: ServerSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.prompts = PromptBuilder(backend.tokenizer, settings.template_version)

    def model_info(self) -> pb.ModelInfo:
        s = self.settings
        return pb.ModelInfo(
            model=s.model,
            revision=s.revision or "",
            backend=self.backend.name,
            max_model_len=self.backend.max_model_len,
            max_new_tokens=s.max_new_tokens,
            default_truncate_length=s.default_truncate_length,
            max_truncate_length=s.max_truncate_length,
            max_documents=s.max_documents,
            max_text_chars=s.max_text_chars,
            template_version=self.prompts.template_version,
            default_instruction=s.default_instruction,
            default_alpha=s.default_alpha,
        )

    async def rerank(self, request: pb.RerankRequest) -> pb.RerankResponse:
        """Validate, score and order; raises ``InvalidRequest`` for a bad request."""
        params = validate(request, self.settings)
        prompts = self.prompts.build(
            params.instruction, params.query, params.texts, params.truncate_length
        )
        self._check_lengths(params, [len(p.token_ids) for p in prompts])
        generations = await self.backend.generate(
            [p.token_ids for p in prompts], self.settings.max_new_tokens
        )
        scored = [
            Scored(self.parse(g, params.return_reasoning), p.truncated)
            for g, p in zip(generations, prompts, strict=True)
        ]
        results, notice = rank(params, scored)
        return pb.RerankResponse(
            results=results,
            model=self.settings.model,
            usage=pb.Usage(
                prompt_tokens=sum(g.prompt_tokens for g in generations),
                generated_tokens=sum(len(g.token_ids) for g in generations),
                cached_prompt_tokens=sum(g.cached_prompt_tokens for g in generations),
            ),
            ordered_by=pb.ORDERING_HYBRID_SCORE
            if all(f is not None for f in params.first_stage)
            else pb.ORDERING_RANK_SCORE,
            notice=notice,
        )

    def parse(self, generation: Generation, with_reasoning: bool = False) -> ParsedAnswer:
        """Read the answer of one generation (token pieces from the model's tokenizer).

        Generation stops at ``</answer>``, so the answer sits in the last few tokens: unless the
        reasoning is wanted, only a tail is decoded (decoding every token of ~400-token
        reasoning chains for 100 documents costs more than the rest of the request's Python).
        """
        ids, logprobs = generation.token_ids, generation.logprobs
        start = 0 if with_reasoning else max(0, len(ids) - _ANSWER_TAIL_TOKENS)
        pieces = self._pieces(ids[start:])
        if start and "<answer>" not in "".join(pieces):
            start, pieces = 0, self._pieces(ids)
        return parse_answer(pieces, logprobs[start:], generation.hit_token_limit)

    def _pieces(self, ids: list[int]) -> list[str]:
        return list(
            self.backend.tokenizer.batch_decode([[t] for t in ids], skip_special_tokens=False)
        )

    def _check_lengths(self, params: RerankParams, lengths: list[int]) -> None:
        budget = self.backend.max_model_len - self.settings.max_new_tokens
        over = [
            Violation(
                f"documents[{i}]",
                f"prompt is {n} tokens; with max_new_tokens {self.settings.max_new_tokens} the "
                f"model's max_model_len {self.backend.max_model_len} allows {budget}: "
                "lower truncate_length",
            )
            for i, n in enumerate(lengths)
            if n > budget
        ]
        if over:
            raise InvalidRequest(over[:20])
