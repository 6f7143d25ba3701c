"""Tiny Qwen3 checkpoints built locally, for the demo, the tests and the benchmarks.

Real ERank weights cannot be downloaded on an offline machine, so everything that needs a model
without one uses a checkpoint built here: a byte-level BPE tokenizer trained on built-in text
(Qwen's pre-tokenizer split, digits one token each, ChatML chat template) and a 2-layer Qwen3
with head_dim 64. Such a model measures nothing about ranking quality.

Two kinds:

* ``build_random_checkpoint``: random weights. It babbles until ``max_new_tokens``; use it to load
  the engine for real and to measure throughput at a fixed output length.
* ``build_scripted_checkpoint``: a *bigram chain*. Attention and MLP outputs are zeroed, so the
  final hidden state is the current token's embedding (a scaled one-hot "slot" vector), and
  ``lm_head`` maps each slot to the logits of the next token. Greedy decoding therefore writes a
  fixed script (``<think>…</think><answer>7</answer>``) and the answer step's logits, and so its
  probability, are set by hand. With ``noise > 0`` attention and MLP keep random weights and free
  hidden dimensions carry random logits, so the answer digit varies with the prompt: that is the
  demo's model (meaningless, but it writes the answer format in a handful of tokens).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CHECKPOINT_FORMAT = 2  # bump when the builders change, so cached checkpoints are rebuilt

# Qwen2/Qwen3's pre-tokenizer split: letters, single digits, punctuation runs, newlines, spaces.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_ADDED = ["<think>", "</think>"]  # plain added tokens, as in Qwen3 (not special: they decode)
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_CORPUS = """\
Given a query and a document, please give a relevance score of 0 to 10. The goal or relevance
definition is: Retrieve relevant documents for the query. Here is the query: Here is the document:
After thinking, directly choose a relevance score from [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].
- 0 represents completely not related. - 10 means perfectly related. Desired output format:
<think> put your thinking here </think><answer> Only allows an integer here </answer> Your output:
The query asks about search engines, ranking, documents, retrieval and relevance. A reranker reads
the query and each document and decides how well the document answers the query. BM25 scores
count matching terms; language models read meaning. OpenSearch and Elasticsearch return hits with
a score. The weather today is sunny and warm; the cat sleeps on the sofa while the dog plays in the
garden. Python, Java, Go and Rust are programming languages. I am happy, excited, peaceful or sad.
Coffee, tea and water are drinks. The capital of France is Paris; Berlin is in Germany.
"""


@dataclass(frozen=True)
class TinyConfig:
    """Shape of a tiny Qwen3 (head_dim 64 as in the real models)."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    head_dim: int = 64
    max_position_embeddings: int = 8192
    seed: int = 0


@dataclass(frozen=True)
class Script:
    """What a scripted checkpoint writes, and how sure it is of the answer.

    ``text`` is decoded greedily token by token; ``answer_logits`` sets the logits at the step
    after ``<answer>`` (token text → logit, all others 0), ``continuation_logits`` those at the
    step after the answer's first digit, for two-digit answers. ``margin`` is the logit of every
    other scripted step, large enough that those steps have probability ~1.
    """

    text: str = "<think>scripted</think><answer>7</answer>"
    answer_logits: Mapping[str, float] = field(default_factory=lambda: {"7": 8.0, "8": 7.0})
    continuation_logits: Mapping[str, float] = field(default_factory=dict)
    margin: float = 40.0
    noise: float = 0.0


def cache_root() -> Path:
    """Where built checkpoints are kept between runs (outside any repository)."""
    base = os.environ.get("ERANK_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "erank"
    )
    return Path(base) / "checkpoints"


def _key(kind: str, *parts: object) -> str:
    blob = json.dumps([CHECKPOINT_FORMAT, kind, *parts], sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def build_tokenizer(vocab_size: int, path: Path) -> None:
    """Train the byte-level BPE and save it as a transformers fast tokenizer in ``path``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(_SPECIAL) - len(_ADDED),
        special_tokens=_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.add_tokens(_ADDED)
    fast.chat_template = _CHAT_TEMPLATE
    fast.save_pretrained(str(path))


def _qwen3_config(cfg: TinyConfig, tokenizer_len: int, tie: bool):  # type: ignore[no-untyped-def]
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=max(cfg.vocab_size, tokenizer_len),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=tie,
        dtype="float32",
    )


def _finish(path: Path, model: object, tokenizer: object) -> Path:
    """Save into a private folder, then rename: concurrent builders never see half a checkpoint."""
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    model.save_pretrained(str(staging), safe_serialization=True)  # type: ignore[attr-defined]
    tokenizer.save_pretrained(str(staging))  # type: ignore[attr-defined]
    (staging / "erank-checkpoint.json").write_text(json.dumps({"format": CHECKPOINT_FORMAT}))
    try:
        staging.rename(path)
    except OSError:  # another process finished the same checkpoint first
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _cached(name: str, root: Path | None) -> tuple[Path, bool]:
    path = (root or cache_root()) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, (path / "erank-checkpoint.json").exists()


def _tokenizer(cfg: TinyConfig) -> Any:
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        build_tokenizer(cfg.vocab_size, Path(tmp))
        return AutoTokenizer.from_pretrained(tmp)


def build_random_checkpoint(cfg: TinyConfig = TinyConfig(), root: Path | None = None) -> Path:
    """A random-weight tiny Qwen3 (cached by its config); returns its directory."""
    path, ready = _cached(_key("random", asdict(cfg)), root)
    if ready:
        return path
    import torch
    from transformers import Qwen3ForCausalLM

    tokenizer = _tokenizer(cfg)
    torch.manual_seed(cfg.seed)
    model = Qwen3ForCausalLM(_qwen3_config(cfg, len(tokenizer), tie=True))
    return _finish(path, model, tokenizer)


def build_scripted_checkpoint(
    script: Script = Script(), cfg: TinyConfig = TinyConfig(), root: Path | None = None
) -> Path:
    """A bigram-chain Qwen3 that greedily writes ``script.text`` (see module docstring)."""
    path, ready = _cached(_key("scripted", asdict(cfg), asdict(script)), root)
    if ready:
        return path
    import torch
    from transformers import Qwen3ForCausalLM

    tokenizer = _tokenizer(cfg)
    torch.manual_seed(cfg.seed)
    model = Qwen3ForCausalLM(_qwen3_config(cfg, len(tokenizer), tie=False))
    transitions = _transitions(tokenizer, script)
    slots = {tok: i for i, tok in enumerate(sorted({p for p in transitions}))}
    if len(slots) >= cfg.hidden_size:
        raise ValueError(f"script needs {len(slots)} slots, hidden_size is {cfg.hidden_size}")
    free = torch.ones(cfg.hidden_size, dtype=torch.bool)
    free[: len(slots)] = False
    h = cfg.hidden_size
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        head = model.lm_head.weight
        # Non-script tokens: random content in the free dimensions only (noise 0: none at all).
        for weight in (emb, head):
            weight.normal_(0.0, 1.0 if script.noise else 0.0)
            weight[:, ~free] = 0.0
        for tok, slot in slots.items():
            emb[tok] = 0.0
            emb[tok, slot] = 10.0
        # After RMSNorm (weight 1) the one-hot of scale 10 becomes ~sqrt(h) in its slot.
        for prev, nexts in transitions.items():
            for nxt, logit in nexts.items():
                head[nxt, slots[prev]] = logit / h**0.5
        for layer in model.model.layers:
            if script.noise == 0.0:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            else:
                layer.self_attn.o_proj.weight.mul_(script.noise)
                layer.mlp.down_proj.weight.mul_(script.noise)
    return _finish(path, model, tokenizer)


def _transitions(tokenizer: object, script: Script) -> dict[int, dict[int, float]]:
    """prev token id → {next token id: logit}, from the chat template's last token on."""
    encode = tokenizer.encode  # type: ignore[attr-defined]
    prompt_end = encode("<|im_start|>assistant\n", add_special_tokens=False)[-1]
    ids = [prompt_end, *encode(script.text, add_special_tokens=False)]
    answer_at = _answer_position(tokenizer, ids)
    out: dict[int, dict[int, float]] = {}
    for i, (prev, nxt) in enumerate(itertools.pairwise(ids)):
        if i == answer_at - 1:
            step = {_single(tokenizer, t): x for t, x in script.answer_logits.items()}
        elif i == answer_at and script.continuation_logits:
            step = {_single(tokenizer, t): x for t, x in script.continuation_logits.items()}
        else:
            step = {nxt: script.margin}
        if prev in out and out[prev] != step:
            raise ValueError(f"script token {tokenizer.decode([prev])!r} needs two successors")  # type: ignore[attr-defined]
        out[prev] = step
    # Any other answer the answer step allows is followed by what follows the scripted answer.
    close = ids[answer_at + 1 + bool(script.continuation_logits)]
    for alternative in out[ids[answer_at - 1]]:
        out.setdefault(alternative, {close: script.margin})
    return out


def _answer_position(tokenizer: object, ids: list[int]) -> int:
    """Index in ``ids`` of the first token after ``<answer>``."""
    text = ""
    for i, t in enumerate(ids):
        text += tokenizer.decode([t])  # type: ignore[attr-defined]
        if text.endswith("<answer>"):
            return i + 1
    raise ValueError("script has no <answer>")


def _single(tokenizer: object, text: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]
    if len(ids) != 1:
        raise ValueError(f"{text!r} is not one token")
    return int(ids[0])
