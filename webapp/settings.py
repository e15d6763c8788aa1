"""GuardChat settings: one class, read from GUARDCHAT_* environment variables and `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-insecure-secret-change-me"  # noqa: S105 - refused outside development


class InsecureSettingsError(ValueError):
    """Raised when the settings are unsafe for the chosen environment."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GUARDCHAT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- runtime ---------------------------------------------------------------------------
    environment: Literal["development", "production"] = Field(
        "development", description="`production` refuses insecure defaults at start-up."
    )
    secret_key: SecretStr = Field(
        SecretStr(DEV_SECRET),
        description="Signs session cookies. Must be set (32+ characters) in production.",
    )
    data_dir: Path = Field(Path("data"), description="Directory for the SQLite file and first-run secrets.")
    database_url: str = Field(
        "",
        description="SQLAlchemy URL. Empty means sqlite:///<data_dir>/guardchat.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    host: str = Field("127.0.0.1", description="Address `guardchat serve` listens on.")
    port: int = Field(7860, ge=1, le=65535, description="Port `guardchat serve` listens on.")
    open_signup: bool = Field(False, description="Let anyone create an account from the sign-in page.")

    # --- Triton ----------------------------------------------------------------------------
    triton_url: str = Field(
        "127.0.0.1:8001", description="Triton address, host:port (gRPC port for grpc, HTTP port for http)."
    )
    triton_protocol: Literal["grpc", "http"] = Field("grpc", description="Protocol used to reach Triton.")
    triton_model: str = Field("smollm2_stream", description="Name of the chat model served by Triton.")
    triton_guard_model: str = Field(
        "", description="Optional separate Triton model for self-check rails. Empty uses triton_model."
    )
    triton_connect_timeout_s: float = Field(5.0, gt=0, description="Seconds to wait to reach Triton.")
    triton_idle_timeout_s: float = Field(
        30.0, gt=0, description="Seconds to wait for the next streamed token before giving up."
    )
    llm_backend: str = Field("triton", description="Registered chat-model backend (tests register fakes).")

    # --- prompt and generation -------------------------------------------------------------
    prompt_template: Literal["nemo-chat", "chatml"] = Field(
        "chatml", description="Prompt format. `nemo-chat` for Llama3-70B-PPO-Chat, `chatml` for SmolLM2."
    )
    tokenizer_path: Path | None = Field(
        None, description="tokenizer.json for exact token counts; otherwise a conservative estimate."
    )
    system_prompt: str = Field("", description="Default system prompt for new conversations.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Default sampling temperature.")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Default nucleus sampling top_p.")
    top_k: int = Field(40, ge=0, le=1000, description="Default top_k (0 disables).")
    max_output_tokens: int = Field(512, ge=1, description="Default maximum new tokens per reply.")
    context_tokens: int = Field(4096, ge=256, description="Model context window in tokens.")
    max_input_tokens: int = Field(3072, ge=128, description="Token budget for the rendered prompt.")
    max_output_tokens_limit: int = Field(1024, ge=1, description="Hard cap on new tokens per reply.")

    # --- rails -----------------------------------------------------------------------------
    rails_dir: Path = Field(Path("rails"), description="NeMo Guardrails configuration directory.")
    self_check_rails: bool | None = Field(
        None,
        description="Ask the model to self-check input and output. Empty means on, except for the bundled "
        "SmolLM2 stand-in, which answers 'Yes' to nearly every self-check prompt (97% false refusals measured).",
    )
    toxicity_threshold: float = Field(
        0.8, ge=0.0, le=1.0, description="Offline classifier probability at or above which a text is blocked."
    )
    harmful_request_threshold: float = Field(
        0.625,
        ge=0.0,
        le=1.0,
        description="Learned rail: score of a harm category (the heads' probability blended with the wording "
        "head's) at or above which a request is blocked. 1 switches it off.",
    )
    jailbreak_threshold: float = Field(
        0.65,
        ge=0.0,
        le=1.0,
        description="Learned rail: score of jailbreak or prompt injection (blended as above) at or above which a "
        "message is blocked. 1 switches it off.",
    )
    harmful_reply_threshold: float = Field(
        0.65,
        ge=0.0,
        le=1.0,
        description="Learned rail: score of harmful content (the heads' probability blended with the wording "
        "head's) at or above which a reply chunk is blocked. 1 switches it off.",
    )
    rule_corroboration_threshold: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="The abuse, jailbreak and harmful-request word rules block a message of three words or more "
        "only when the learned request rail scores it at least this (a second reading; a jailbreak found in a "
        "decoded payload blocks alone). 0 lets the rules block alone.",
    )
    output_rule_corroboration_threshold: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="The output abuse word rule blocks a reply chunk the learned reply rail judges (12 words or "
        "more, with its context) only when that rail scores it at least this; a reply's first words are decided by "
        "the rule alone. 0 lets the rule block alone.",
    )
    input_window_turns: int = Field(
        4,
        ge=0,
        le=50,
        description="Earlier user turns checked together with each new message (a payload split over turns).",
    )
    unsupported_language: Literal["", "block", "allow"] = Field(
        "",
        description="Messages in languages the rails were not measured on (not en, fr, de, es, it, pt, nl): "
        "block or allow. Empty blocks in production and allows in development.",
    )
    content_safety_model: str = Field(
        "", description="Triton model name of a content-safety guard (Llama Guard). Empty disables it."
    )
    rail_timeout_s: float = Field(20.0, gt=0, description="A rail that takes longer blocks the turn.")
    output_chunk_size: int = Field(
        32, ge=4, description="Largest output-rail chunk in tokens; every streamed chunk is checked before it is shown."
    )
    output_first_chunk_size: int = Field(
        1,
        ge=1,
        description="Tokens in a reply's first checked chunk; each next chunk doubles up to output_chunk_size. "
        "Small gives a fast first token at the cost of more rail calls early in a reply.",
    )
    output_context_size: int = Field(16, ge=0, description="Tokens of the previous chunk re-checked with the next one.")
    refusal_input: str = Field(
        "I can't help with that request.", description="Reply shown when an input rail blocks a turn."
    )
    refusal_output: str = Field(
        "I can't share that response.", description="Reply shown when an output rail blocks a reply."
    )
    refusal_error: str = Field(
        "The safety check could not run, so this turn was blocked. Please try again.",
        description="Reply shown when a rail fails (fail closed).",
    )

    # --- limits ----------------------------------------------------------------------------
    max_message_chars: int = Field(8000, ge=1, description="Longest accepted user message, in characters.")
    max_messages: int = Field(200, ge=1, description="Most messages accepted in one API request.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest accepted HTTP request body.")
    rate_limit_per_minute: int = Field(30, ge=1, description="Turns one user may start per minute.")
    max_concurrent_streams: int = Field(3, ge=1, description="Replies one user may stream at once.")
    max_username_chars: int = Field(64, ge=3, description="Longest accepted username.")
    queue_concurrency: int = Field(128, ge=1, description="Gradio events served at once (streams included).")

    # --- local model server ----------------------------------------------------------------
    local_http_port: int = Field(8000, description="HTTP port of `guardchat model serve`.")
    local_grpc_port: int = Field(8001, description="gRPC port of `guardchat model serve`.")
    local_metrics_port: int = Field(8002, description="Metrics port of `guardchat model serve`.")
    triton_request_timeout_s: float = Field(
        300.0, gt=0, description="Seconds a non-streaming Triton request may take in total."
    )
    moderation_export_max_flags: int = Field(
        10_000, ge=1, description="Most flags one moderation export (CSV or JSONL, with transcripts) may hold."
    )
    local_model_threads: int = Field(
        2,
        ge=1,
        description="CPU threads llama.cpp uses for the local SmolLM2 model. On a small machine that is busy "
        "with other work, 1 is much faster than 2 (threads that wait on each other stall).",
    )
    stream_save_interval_s: float = Field(
        2.0,
        gt=0,
        description="While a reply streams, the text shown so far is saved this often (seconds), so a crashed "
        "process loses at most this much of a reply; start-up recovery keeps the rest, marked interrupted.",
    )

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value and "://" not in value:
            raise ValueError(
                f"GUARDCHAT_DATABASE_URL {value!r} is not a URL; expected e.g. sqlite:///data/guardchat.db "
                "or postgresql+psycopg://user@host/db"
            )
        return value

    @model_validator(mode="after")
    def _check_budget(self) -> Settings:
        if self.max_input_tokens >= self.context_tokens:
            raise ValueError(
                f"max_input_tokens ({self.max_input_tokens}) must be below context_tokens ({self.context_tokens})"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'guardchat.db'}"

    @property
    def self_check_enabled(self) -> bool:
        if self.self_check_rails is not None:
            return self.self_check_rails
        return not (self.guard_model.startswith("smollm2") or self.triton_model.startswith("synthetic"))

    @property
    def block_unsupported_languages(self) -> bool:
        if self.unsupported_language:
            return self.unsupported_language == "block"
        return self.environment == "production"

    @property
    def guard_model(self) -> str:
        return self.triton_guard_model or self.triton_model

    def check_secure(self) -> None:
        """Refuse insecure defaults outside development mode."""
        if self.environment == "development":
            return
        secret = self.secret_key.get_secret_value()
        if secret == DEV_SECRET or len(secret) < 32:
            raise InsecureSettingsError(
                "GUARDCHAT_SECRET_KEY must be set to a random value of at least 32 characters in production "
                "(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
