"""What a turn tells its caller (UI or API), in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from webapp.llm.generation import FinishReason

TurnStatus = Literal["complete", "blocked", "error", "interrupted"]


@dataclass(frozen=True)
class TurnStarted:
    conversation_id: int
    user_message_id: int
    assistant_message_id: int


@dataclass(frozen=True)
class InputChecked:
    """Input rails passed; the model is generating."""


@dataclass(frozen=True)
class ReplyDelta:
    """Text that has passed the output rails, safe to show."""

    text: str


@dataclass(frozen=True)
class ReplyRetracted:
    """Discard everything shown so far; the refusal follows in TurnEnded."""


@dataclass(frozen=True)
class TurnEnded:
    status: TurnStatus
    reply: str
    conversation_id: int
    assistant_message_id: int
    verdict: dict[str, Any] | None = None
    flagged: bool = False
    error: str | None = None
    # Why a turn ended in "error", for API status codes: model_unavailable, model_timeout, model_error,
    # prompt_too_long, internal_error.
    error_code: str | None = None
    # What the model received and wrote, by its own count where it reports one (else ours); 0 and 0 when the
    # turn never reached the model (blocked by an input rail).
    tokens_in: int | None = None
    tokens_out: int | None = None
    # Why the model stopped, for a complete turn: "length" at the max-token limit, else "stop".
    finish_reason: FinishReason | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)


ChatEvent = TurnStarted | InputChecked | ReplyDelta | ReplyRetracted | TurnEnded
