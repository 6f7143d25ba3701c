"""Per-index reranking settings of the proxy and the client wrappers (a validated YAML file).

Example ``proxy.yaml``::

    default:                 # applies to every index no entry below matches
      fields: [text]
      window: 50
    indices:
      products:              # an index name, or an fnmatch pattern such as "logs-*"
        fields: [title, description]
        window: 100
        instruction: "Is this product what the shopper is looking for?"
        alpha: 0.3
      scifact:
        instruction_preset: beir   # the paper's instruction (erank_contract/instructions.py)
        budget_ms: 2000      # the scoring call's budget (connector/budget.py)
        on_budget: cut       # past it: cut reasoning short (default), or fail_open
        finish_in_background: true  # cut documents finish into the server's score cache
      manuals:
        fusion: rrf          # zscore (the paper's, server default), minmax or rrf
        rank_constant: 20    # RRF's k (rrf only)
        long_documents: best_passage   # score long texts by their best passage, not the first
        passage_overlap: 64  # tokens shared by neighbouring passages (best_passage only)
        explain: true        # every reranked hit carries the model's reasoning
      audit-*:
        enabled: false       # searches on these indices pass through untouched
    scoring_server:          # how to reach a protected scoring server (erank_contract/security.py)
      tls_ca: /etc/erank/ca.pem        # TLS: the CA of the server's certificate
      tls_cert: /etc/erank/proxy.pem   # mutual TLS: this client's certificate and key
      tls_key: /etc/erank/proxy.key
      token_file: /etc/erank/token     # bearer token (or `token:`, kept out of files better)
      breaker:               # stop calling a failing scoring server for a while (failopen.py)
        failures: 5          # consecutive failed calls that open it (0: no breaker)
        cooldown_ms: 30000   # how long searches fail open without a call before a trial call

The same keys (but ``truncate_length``; plus ``query_text``) can be given per search in the
body's ``"ext": {"erank": {...}}``; the proxy strips that before forwarding, because neither
engine knows an ``erank`` extension. A per-search ``fusion`` other than ``rrf`` drops the index's
``rank_constant``, and ``long_documents: truncate`` its ``passage_overlap``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from connector.budget import DEFAULT_ON_BUDGET, MAX_BUDGET_MS, OnBudget, pairing_error
from connector.rewrite.breaker import BreakerConfig
from erank_contract.instructions import PRESETS
from erank_contract.security import ClientSecurity
from erank_contract.vocabulary import UINT32_MAX, FusionName, LongDocumentsName

DEFAULT_WINDOW = 50
DEFAULT_BUDGET_MS = 10_000
MAX_WINDOW = 10_000  # both engines' default index.max_result_window


def _known_preset(name: str) -> str:
    if name not in PRESETS:
        raise ValueError(f"unknown instruction preset {name[:40]!r}; known: {', '.join(PRESETS)}")
    return name


PresetName = Annotated[str, AfterValidator(_known_preset)]


def _pairing_errors(
    fusion: str | None,
    rank_constant: int | None,
    long_documents: str | None,
    passage_overlap: int | None,
    on_budget: OnBudget | None = None,
    finish_in_background: bool | None = None,
) -> list[str]:
    """Keys that only mean something next to another key's value (the server refuses or
    ignores them)."""
    errors = []
    if rank_constant is not None and fusion != "rrf":
        errors.append("rank_constant only applies to fusion: rrf")
    if passage_overlap is not None and long_documents != "best_passage":
        errors.append("passage_overlap only applies to long_documents: best_passage")
    if (budget := pairing_error(on_budget, finish_in_background)) is not None:
        errors.append(budget)
    return errors


class IndexConfig(BaseModel):
    """How searches on one index (or index pattern) are reranked."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool = True
    fields: tuple[str, ...] = Field(
        default=("text",),
        min_length=1,
        description="document text: these fields, joined by newlines",
    )
    window: int = Field(
        default=DEFAULT_WINDOW, ge=1, le=MAX_WINDOW, description="top BM25 hits reranked"
    )
    instruction: str | None = Field(
        default=None, description="relevance instruction; server default"
    )
    instruction_preset: PresetName | None = Field(
        default=None, description="name of one of the paper's instructions, instead of instruction"
    )
    alpha: float | None = Field(default=None, ge=0, le=1, description="BM25 weight; server default")
    budget_ms: int = Field(
        default=DEFAULT_BUDGET_MS, ge=1, le=MAX_BUDGET_MS, description="the scoring call's budget"
    )
    on_budget: OnBudget = Field(
        default=DEFAULT_ON_BUDGET,
        description="cut: the server cuts reasoning short to answer within budget_ms;"
        " fail_open: all or nothing, the engine's own page past it",
    )
    finish_in_background: bool = Field(
        default=False, description="cut documents finish afterwards into the score cache"
    )
    truncate_length: int = Field(
        default=0, ge=0, le=UINT32_MAX, description="tokens per text; 0 = server default"
    )
    fusion: FusionName | None = Field(default=None, description="zscore, minmax or rrf")
    rank_constant: int | None = Field(
        default=None, ge=1, le=UINT32_MAX, description="RRF's k; server default"
    )
    long_documents: LongDocumentsName | None = Field(
        default=None, description="truncate (server default) or best_passage"
    )
    passage_overlap: int | None = Field(
        default=None, ge=0, le=UINT32_MAX, description="best_passage only"
    )
    explain: bool = Field(default=False, description="the model's reasoning on every hit")

    @model_validator(mode="after")
    def _consistent(self) -> IndexConfig:
        if self.instruction and self.instruction_preset:
            raise ValueError("give instruction or instruction_preset, not both")
        errors = _pairing_errors(
            self.fusion,
            self.rank_constant,
            self.long_documents,
            self.passage_overlap,
            self.on_budget,
            self.finish_in_background,
        )
        if errors:
            raise ValueError("; ".join(errors))
        return self

    @property
    def budget_s(self) -> float:
        return self.budget_ms / 1000.0


class RerankOverrides(BaseModel):
    """``ext.erank`` of one search: per-request overrides of the index's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    query_text: str | None = Field(default=None, min_length=1)
    enabled: bool | None = None
    fields: tuple[str, ...] | None = Field(default=None, min_length=1)
    window: int | None = Field(default=None, ge=1, le=MAX_WINDOW)
    instruction: str | None = None
    instruction_preset: PresetName | None = None
    alpha: float | None = Field(default=None, ge=0, le=1)
    budget_ms: int | None = Field(default=None, ge=1, le=MAX_BUDGET_MS)
    on_budget: OnBudget | None = None
    finish_in_background: bool | None = None
    fusion: FusionName | None = None
    rank_constant: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    long_documents: LongDocumentsName | None = None
    passage_overlap: int | None = Field(default=None, ge=0, le=UINT32_MAX)
    explain: bool | None = None

    @model_validator(mode="after")
    def _one_instruction(self) -> RerankOverrides:
        if self.instruction and self.instruction_preset:
            raise ValueError("give instruction or instruction_preset, not both")
        if (error := pairing_error(self.on_budget, self.finish_in_background)) is not None:
            raise ValueError(error)
        return self

    def apply(self, config: IndexConfig) -> IndexConfig:
        """``config`` with every override that was given; an instruction given per search
        replaces the index's preset, and a preset its instruction; a fusion method replaces
        the index's ``rank_constant``, a ``long_documents`` choice its ``passage_overlap`` and
        ``on_budget: fail_open`` its ``finish_in_background``.
        :class:`ConfigError` when the result pairs a key with a value it does not apply to."""
        changes = self.model_dump(exclude_none=True, exclude={"query_text"})
        if "instruction" in changes:
            changes.setdefault("instruction_preset", None)
        if "instruction_preset" in changes:
            changes.setdefault("instruction", None)
        if "fusion" in changes:
            changes.setdefault("rank_constant", None)
        if "long_documents" in changes:
            changes.setdefault("passage_overlap", None)
        if changes.get("on_budget") == "fail_open":
            changes.setdefault("finish_in_background", False)
        if not changes:
            return config
        merged = config.model_copy(update=changes)
        errors = _pairing_errors(
            merged.fusion,
            merged.rank_constant,
            merged.long_documents,
            merged.passage_overlap,
            merged.on_budget,
            merged.finish_in_background,
        )
        if errors:
            raise ConfigError("; ".join(f"[ext.erank] {e}" for e in errors))
        return merged


class ScoringServerConfig(ClientSecurity):
    """``scoring_server:``: how to reach it (TLS, token) and when to stop calling it."""

    breaker: BreakerConfig = Field(
        default_factory=BreakerConfig, description="circuit breaker of the scoring calls"
    )


class ProxyConfig(BaseModel):
    """The whole file: a default plus per-index entries, the fail-open log interval, and how to
    reach the scoring server."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    default: IndexConfig = Field(default_factory=IndexConfig)
    indices: dict[str, IndexConfig] = Field(default_factory=dict)
    log_interval_s: float = Field(
        default=10.0, gt=0, description="at most one fail-open warning per"
    )
    scoring_server: ScoringServerConfig = Field(
        default_factory=ScoringServerConfig,
        description="TLS, token and circuit breaker towards the scoring server",
    )

    def for_name(self, name: str) -> IndexConfig:
        """The entry named exactly ``name``, else the first pattern matching it, else default."""
        if name in self.indices:
            return self.indices[name]
        for pattern, config in self.indices.items():
            if fnmatch.fnmatchcase(name, pattern):
                return config
        return self.default

    def for_target(self, target: str | None) -> IndexConfig | None:
        """The settings for a search path's index expression (``a,b``, ``logs-*``, none = all).

        ``None`` when the named indices have different settings: one search gets one window,
        field list and budget, so such a search is passed through rather than guessed at.
        """
        if not target or target in ("_all", "*"):
            every = {self.default, *self.indices.values()}
            return every.pop() if len(every) == 1 else None
        if target in self.indices:
            return self.indices[target]
        names = [n.strip() for n in target.split(",") if n.strip()]
        return self._uniform(names)

    def _uniform(self, names: list[str]) -> IndexConfig | None:
        configs = {self.for_name(n) for n in names} or {self.default}
        return configs.pop() if len(configs) == 1 else None


class ConfigError(ValueError):
    """A proxy config file or ``ext.erank`` section that does not validate."""


def describe(error: ValidationError, prefix: str) -> str:
    """One line naming each bad key under ``prefix`` and why (for 400 bodies and the CLI)."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        parts.append(f"[{where}] {item['msg']}")
    return "; ".join(parts)


def parse_config(data: Mapping[str, Any] | None) -> ProxyConfig:
    """Validate a config mapping; :class:`ConfigError` names every bad key."""
    try:
        return ProxyConfig.model_validate(dict(data or {}))
    except ValidationError as exc:
        raise ConfigError(describe(exc, "")) from exc


def load_config(path: str | Path | None) -> ProxyConfig:
    """The config in a YAML file (``None``: all defaults)."""
    if path is None:
        return ProxyConfig()
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return parse_config(data)


def parse_overrides(data: object) -> RerankOverrides:
    """Validate a search's ``ext.erank``; :class:`ConfigError` names every bad key."""
    if not isinstance(data, dict):
        raise ConfigError("[ext.erank] must be an object")
    try:
        return RerankOverrides.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, "ext.erank")) from exc
