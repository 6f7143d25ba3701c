"""Named instruction presets: the relevance definitions ERank was evaluated (and trained) with.

The paper (arXiv 2509.00520, appendix D, Table 7 "Task-specific instruction used in prompts")
gives one instruction per benchmark; training used the same ones (MS MARCO with TREC DL's,
Promptriever with FollowIR's, ReasonIR's hard queries with BRIGHT's). They are kept here word for
word, odd grammar included ("retrieval relevant passage" is what the model saw), so a user who
names a preset gets exactly the text of the published numbers. ``default`` is the model card's
instruction. Free-text instructions keep working; a preset only saves retyping one of these.
"""

from __future__ import annotations

from types import MappingProxyType

DEFAULT_INSTRUCTION = "Retrieve relevant documents for the query."

_BEIR = "Given a query, retrieval relevant passage."
_THEOREMQA = (
    "We want to find a document which uses the same mathematical process as the query. "
    "A document is relevant if it uses the same mathematical process as the query."
)

PRESETS: MappingProxyType[str, str] = MappingProxyType(
    {
        "default": DEFAULT_INSTRUCTION,
        "beir": _BEIR,
        "trec_dl": _BEIR,
        "followir": "Retrieval the relevant passage for the given query. Be careful about the "
        "extra requirements about relevance in the query.",
        # BRIGHT: its StackExchange tasks (biology, earth science, economics, psychology,
        # robotics, stackoverflow, sustainable living) share one wording; four tasks have their own.
        "bright": "A document is relevant if it contains information that helps answer or "
        "address the query. A document is not relevant if it doesn't contain information that "
        "helps answer the query, even if it mentions similar topics.",
        "bright_aops": "We want to find different but similar math problems to the query. A "
        "document is relevant if it uses the same class of functions and shares any overlapping "
        "techniques.",
        "bright_leetcode": "I am looking to find different problems that share similar data "
        "structures (of any kind) or algorithms (e.g. DFS, DP, sorting, traversals, etc.). I am "
        "looking for problems that share one or both of these similarities to the query. Does "
        "the passage below share any similarities? e.g. if there was a textbook on leetcode "
        "problems, this would be in the same book even though it could be in a different "
        "chapter.",
        "bright_pony": "I will use the programming language pony. But to solve the problem "
        "above, I need to know things about pony. A passage is relevant if it contains docs that "
        "match any part (even basic parts) of the code I will have to write for the above "
        "program.",
        "bright_theoremqa_questions": _THEOREMQA,
        "bright_theoremqa_theorems": _THEOREMQA,
    }
)

SOURCES: MappingProxyType[str, str] = MappingProxyType(
    {
        name: "model card (Alibaba-NLP/ERank-4B)"
        if name == "default"
        else "arXiv 2509.00520, Table 7"
        for name in PRESETS
    }
)


def preset(name: str) -> str:
    """The instruction named ``name``; ``KeyError`` for an unknown name."""
    return PRESETS[name]
