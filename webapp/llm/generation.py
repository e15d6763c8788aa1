"""How one generation ended: why the model stopped, and how many tokens it received and wrote.

The Triton client notes what the server reports (``ServerReport``): vLLM's ``finish_reason``, the
``num_input_tokens`` / ``num_output_tokens`` that vLLM, the TRT-LLM ensemble and the local model server send
when asked, and whether the reply was cut at a stop string. The chat model settles that into a
``GenerationOutcome``, filling what the server did not say with its own counts: the prompt it rendered, and
the reply's tokens compared with the max-token limit it sent.

A turn's main generation runs inside the guard (webapp/guard/turn.py), which streams plain text. So the one
who owns the turn receives the outcome through ``observe_generation``: the chat model's ``stream_text``
records into the ``GenerationRecord`` that is current in its context (the guard's generation task copies the
context of the step that starts it).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, TypeVar

FinishReason = Literal["stop", "length"]

T = TypeVar("T")
_FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


@dataclass
class ServerReport:
    """What the model server said about one generation, noted as its responses arrive."""

    finish_reason: FinishReason | None = None  # only servers that report it (vLLM, the local model server)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # the sum of each response's count
    stopped_at_stop_string: bool = False
    finished: bool = False  # the generation ended (rather than being closed by its consumer)

    def note(self, *, finish_reason: str | None, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        # vLLM also says "abort", and "None" before its last response: those tell nothing.
        self.finish_reason = _FINISH_REASONS.get(finish_reason or "", self.finish_reason)
        if prompt_tokens is not None:
            self.prompt_tokens = prompt_tokens
        if completion_tokens is not None:
            self.completion_tokens = (self.completion_tokens or 0) + completion_tokens


@dataclass(frozen=True)
class GenerationOutcome:
    # None when the generation did not end by itself (its consumer stopped reading, e.g. after a block).
    finish_reason: FinishReason | None
    prompt_tokens: int  # the server's count where it sent one, else ours
    completion_tokens: int  # likewise


def settle(
    report: ServerReport, *, prompt_tokens: int, count_completion: Callable[[], int], max_new_tokens: int
) -> GenerationOutcome:
    """The outcome of a generation from what the server reported, filling the gaps with our own counts.

    ``prompt_tokens``: our count of the rendered prompt; ``count_completion``: counts the reply (called only
    when the server sent no count); ``max_new_tokens``: the limit sent with the request.
    """
    completion = report.completion_tokens if report.completion_tokens is not None else count_completion()
    reason: FinishReason | None
    if not report.finished:
        reason = None
    elif report.stopped_at_stop_string:
        reason = "stop"  # the reply ends at a stop string, whatever the server says happened after it
    elif report.finish_reason is not None:
        reason = report.finish_reason
    else:
        # NeMo and older TRT-LLM ensembles say only that they stopped: at the limit, or at the end token.
        reason = "length" if completion >= max_new_tokens else "stop"
    return GenerationOutcome(
        finish_reason=reason,
        prompt_tokens=report.prompt_tokens if report.prompt_tokens is not None else prompt_tokens,
        completion_tokens=completion,
    )


@dataclass
class GenerationRecord:
    """Receives the outcome of a turn's main generation (see ``observe_generation``)."""

    outcome: GenerationOutcome | None = None


_CURRENT: ContextVar[GenerationRecord | None] = ContextVar("guardchat_generation_record", default=None)


def current_record() -> GenerationRecord | None:
    """The record the chat model's main generation reports into, if its caller observes one."""
    return _CURRENT.get()


async def observe_generation(events: AsyncIterator[T], record: GenerationRecord) -> AsyncGenerator[T, None]:
    """``events``, with ``record`` current while each of its steps runs, so a generation started in any step
    (in a task of its own, which copies the context) reports into it.

    Set and reset around each step, not once: the caller may step through the events from different tasks.
    """
    try:
        while True:
            token = _CURRENT.set(record)
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return
            finally:
                _CURRENT.reset(token)
            yield event
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
