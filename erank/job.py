"""One request in flight between the scorer's steps (prepare, score, respond)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from erank import passages
from erank.backends.base import Generation
from erank.prompt import Prompt
from erank.ranking import Scored
from erank.validation import RerankParams
from erank_contract.v1 import reranker_pb2 as pb


@dataclass
class Job:
    """One request in flight: its prompts (one per passage), cache keys and what is scored so far.

    Without best-passage mode every document is one passage. ``groups[i]`` are document ``i``'s
    prompts, ``owners[j]`` the document of prompt ``j`` and ``places[j]`` its character span.
    """

    params: RerankParams
    prompts: list[Prompt]
    keys: list[bytes]
    groups: list[range]
    owners: list[int]
    places: list[tuple[int, int]]
    scored: list[Scored | None]
    usage: pb.Usage = field(default_factory=pb.Usage)
    # When the call must be answered (time.monotonic()) if its reasoning may be cut there;
    # None: no deadline, or DEADLINE_POLICY_FAIL (the service enforces that one).
    deadline: float | None = None
    due: float | None = None  # the call's deadline whatever its policy: engine priorities
    received: float = field(default_factory=time.monotonic)
    ranks: list[int] = field(default_factory=list)  # each document's first-stage rank
    closing_margin: float = 0.0  # seconds before the deadline that reasoning was stopped
    # Prompts cut at the deadline: the reasoning they had, to finish in the background.
    partials: dict[int, Generation] = field(default_factory=dict)

    def spent(self, g: Generation) -> None:
        self.usage.prompt_tokens += g.prompt_tokens
        self.usage.generated_tokens += len(g.token_ids)
        self.usage.cached_prompt_tokens += g.cached_prompt_tokens

    def document(self, i: int) -> Scored | None:
        """Document ``i``'s outcome once every passage of it is scored, else None."""
        parts = [self.scored[j] for j in self.groups[i]]
        done = [p for p in parts if p is not None]
        if len(done) < len(parts):
            return None
        if not self.params.best_passage:
            return done[0]
        return passages.best(done, [self.places[j] for j in self.groups[i]])

    def completions(self, scored: list[Scored]) -> pb.Completions:
        """How many documents were answered in full, cut or not at all, and by which deadline."""
        counts = {c: sum(s.completion == c for s in scored) for c in ("full", "cut", "unscored")}
        deadline_ms = 0 if self.deadline is None else (self.deadline - self.received) * 1000
        cut = counts["full"] < len(scored)
        return pb.Completions(
            full=counts["full"],
            cut=counts["cut"],
            unscored=counts["unscored"],
            deadline_ms=max(0, round(deadline_ms)),
            closing_margin_ms=self.closing_margin * 1000 if cut else 0.0,
        )
