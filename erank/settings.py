"""Scoring-server settings: flags > ``ERANK_*`` environment > YAML config file > defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from erank.fusion import DEFAULT_ALPHA
from erank.prompt import TEMPLATE_VERSION
from erank_contract.instructions import DEFAULT_INSTRUCTION
from erank_contract.vocabulary import DEFAULT_MAX_MESSAGE_BYTES

DEFAULT_TRUNCATE_LENGTH = 2048  # tokens, the paper's setting
ScoringModeName = Literal["full", "thinking_budget", "score_only"]


class ServerSettings(BaseSettings):
    """Everything ``erank serve`` can be told; each field is also ``ERANK_<NAME>``."""

    # hide_input_in_errors: a refused value is never echoed (score_cache_url may hold a password)
    model_config = SettingsConfigDict(
        env_prefix="ERANK_", extra="forbid", hide_input_in_errors=True
    )

    # what to load
    model: str = Field("Alibaba-NLP/ERank-4B", description="Hugging Face id or local path")
    revision: str | None = Field(None, description="model revision (branch, tag or commit)")
    backend: Literal["vllm", "transformers"] = Field(
        "vllm", description="vllm, or transformers for machines without vLLM (same scores)"
    )
    device: str | None = Field(None, description="transformers backend: cpu, cuda, cuda:1, …")
    # vLLM engine knobs
    max_model_len: int | None = Field(None, gt=0, description="context length; model's if unset")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    tensor_parallel_size: int = Field(1, ge=1)
    max_num_seqs: int | None = Field(None, ge=1, description="concurrent sequences; vLLM default")
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    enforce_eager: bool = False
    block_size: int | None = Field(None, ge=1, description="KV block size; 32 on CPU if unset")
    load_format: Literal["auto", "dummy"] = Field(
        "auto", description="vLLM weight loading; dummy: random weights, no download (benchmarks)"
    )
    # generation and prompt
    max_new_tokens: int = Field(
        4096, ge=1, description="cap on generated tokens per document (the reference's)"
    )
    template_version: str = TEMPLATE_VERSION
    default_instruction: str = DEFAULT_INSTRUCTION
    default_alpha: float = Field(DEFAULT_ALPHA, ge=0, le=1)
    default_truncate_length: int = Field(DEFAULT_TRUNCATE_LENGTH, ge=1)
    # fast modes (change quality; off by default): see ScoringMode in the proto
    default_mode: ScoringModeName = Field("full", description="mode of requests that name none")
    default_thinking_budget: int = Field(128, ge=0, description="reasoning tokens, budget mode")
    # score cache: 0 entries turns it off
    score_cache_entries: int = Field(100_000, ge=0, description="max cached document scores")
    score_cache_bytes: int = Field(256 * 1024 * 1024, ge=0, description="max cache size (bytes)")
    score_cache_ttl_s: float | None = Field(None, gt=0, description="cached scores expire after")
    # shared score cache (erank/shared_cache.py): one Valkey/Redis all replicas read and write;
    # a secret because the URL may carry a password. Its entries expire after score_cache_ttl_s.
    score_cache_url: SecretStr | None = Field(
        None, description="redis://, rediss://, valkey://, valkeys:// or unix:// URL; off if unset"
    )
    score_cache_shared_timeout_ms: int = Field(
        50, ge=1, description="a shared-cache lookup gives up after this (then all miss)"
    )
    # request limits
    max_documents: int = Field(1000, ge=1)
    max_text_chars: int = Field(100_000, ge=1, description="per query, instruction or document")
    max_truncate_length: int = Field(8192, ge=1)
    max_passages_per_document: int = Field(32, ge=1, description="best-passage mode")
    max_passages_per_request: int = Field(1000, ge=1, description="best-passage mode")
    # admission: calls over a limit get RESOURCE_EXHAUSTED at once, with a retry hint
    max_inflight_requests: int = Field(64, ge=1, description="Rerank calls admitted at once")
    max_queued_documents: int = Field(
        4000, ge=1, description="documents of admitted calls (a call alone is always admitted)"
    )
    retry_after_s: float = Field(1.0, gt=0, description="retry hint sent with a refusal")
    # deadlines (erank/anytime.py): budget_ms limit, finishing cut documents in the background
    max_budget_ms: int = Field(600_000, ge=1, description="largest budget_ms a request may give")
    background_max_documents: int = Field(
        1000, ge=0, description="cut documents waiting to finish in the background; 0 = never"
    )
    background_concurrency: int = Field(
        8, ge=1, description="background completions in the engine at once"
    )
    # shutdown on SIGTERM/SIGINT (and on engine death): drain, then grace, then stop the engine
    shutdown_drain_s: float = Field(
        5.0, ge=0, description="health NOT_SERVING while calls are still accepted"
    )
    shutdown_grace_s: float = Field(
        15.0, ge=0, description="then no new calls; in-flight calls get this long to finish"
    )
    # network
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=1024, description="gRPC, each way")
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="serve Prometheus /metrics on this port"
    )
    metrics_host: str = Field(
        "127.0.0.1", description="address of /metrics: loopback unless told otherwise"
    )
    # security (erank/security.py): TLS, mutual TLS, bearer token
    tls_cert: Path | None = Field(None, description="PEM certificate (chain): TLS-only port")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    tls_client_ca: Path | None = Field(
        None, description="PEM CA; clients must present a certificate it signed (mutual TLS)"
    )
    token: SecretStr | None = Field(None, description="bearer token every Reranker call carries")
    token_file: Path | None = Field(None, description="file whose first line is the token")

    config_file: Path | None = Field(None, exclude=True, description="YAML file with these keys")

    @model_validator(mode="after")
    def _security_pairs(self) -> ServerSettings:
        """Half a TLS setup would silently serve plaintext: refuse it, naming the fields."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        if self.token is not None and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        if self.token is not None and not self.token.get_secret_value().strip():
            raise ValueError("token is empty; leave it unset to accept calls without one")
        return self

    @field_validator("score_cache_url")
    @classmethod
    def _cache_url(cls, url: SecretStr | None) -> SecretStr | None:
        """A wrong scheme or port fails at start, not at the first lookup; the URL is shown
        redacted at most (pydantic names the setting)."""
        if url is not None:
            from erank.shared_cache import client_url  # redis-py, only when a URL is set

            client_url(url.get_secret_value())
        return url

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFromInit(settings_cls, init_settings))


class _YamlFromInit(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``config_file`` (flag) or ``ERANK_CONFIG_FILE``."""

    def __init__(self, settings_cls: type[BaseSettings], init: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._init = init

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        import os

        path = self._init().get("config_file") or os.environ.get("ERANK_CONFIG_FILE")
        if not path:
            return {}
        if not Path(path).is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        return YamlConfigSettingsSource(self.settings_cls, yaml_file=path)()


def load_settings(**overrides: Any) -> ServerSettings:
    """Settings with the given flags on top (``None`` values mean "not given")."""
    return ServerSettings(**{k: v for k, v in overrides.items() if v is not None})
