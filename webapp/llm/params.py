"""Sampling parameters for one reply, validated on the server."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from webapp.settings import Settings


class GenerationParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0, le=1000)
    max_new_tokens: int = Field(512, ge=1, le=4096)
    # A client's own stop strings (the OpenAI API's ``stop``), on top of the prompt template's. They go to the
    # model, so generation ends there and the stored reply is cut too. Per request: never saved as a setting.
    stop: tuple[str, ...] = Field((), max_length=4)

    @classmethod
    def defaults(cls, settings: Settings) -> GenerationParams:
        return cls(
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k,
            max_new_tokens=min(settings.max_output_tokens, settings.max_output_tokens_limit),
        )
