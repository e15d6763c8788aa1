"""Guard one chat turn: input rails, then the model's stream, released chunk by chunk only after output rails.

Why the main generation does not go through NeMo Guardrails (``generate_async``/``stream_async``):
- NeMo would prompt the model through its ``general`` task prompt, not with our system prompt and history;
  ``passthrough: true`` fixes that, but then
- ``stream_async`` returns no log, so a streamed block could not be attributed to a rail from NeMo's own
  record; in parallel mode its streaming output rails even let a chunk through when a rail raises; and it
  does not apply rail rewrites (the markup rail).
So GuardChat runs NeMo's input rails on the user message, streams the real conversation from the chat model
itself (same registry seam, with the turn's sampling parameters), and runs NeMo's output rails on each
chunk (``chunk_size`` tokens, including ``context_size`` tokens of the previous chunk) before any token of it
is released. Every decision is read from NeMo's activated-rails log for that call.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from webapp.guard.loader import LoadedRails, load_rails
from webapp.guard.markup import MarkupNeutraliser, describe
from webapp.guard.runner import RailsRunner, StageResult
from webapp.guard.verdict import ModelCall, RailCheck, Verdict, merge_checks
from webapp.llm.params import GenerationParams
from webapp.llm.templates import ChatTurn
from webapp.settings import Settings

__all__ = [
    "ChatTurn",
    "Delta",
    "EmptyTurnError",
    "GuardEvent",
    "InputPassed",
    "Retract",
    "TurnFinished",
    "TurnGuard",
    "guard_turn",
]

MARKUP_RAIL = "neutralise markup"


@dataclass(frozen=True)
class InputPassed:
    """Input rails passed; generation starts."""

    verdict: Verdict


@dataclass(frozen=True)
class Delta:
    """Checked text, safe to show."""

    text: str


@dataclass(frozen=True)
class Retract:
    """Discard everything shown so far for this reply."""


@dataclass(frozen=True)
class TurnFinished:
    verdict: Verdict
    reply: str  # what the user sees: the checked reply, or the refusal
    unsafe_text: str | None  # the blocked text, for moderators only


GuardEvent = InputPassed | Delta | Retract | TurnFinished


class EmptyTurnError(ValueError):
    """The history holds no user message to answer."""


def _to_langchain(turn: ChatTurn) -> BaseMessage:
    if turn.role == "system":
        return SystemMessage(content=turn.content)
    if turn.role == "assistant":
        return AIMessage(content=turn.content)
    return HumanMessage(content=turn.content)


class _Accumulator:
    """Collects checks and model calls over the stages and chunks of one turn."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.checks: list[RailCheck] = []
        self.calls: list[ModelCall] = []

    def add(self, result: StageResult) -> None:
        self.checks.extend(result.checks)
        self.calls.extend(result.model_calls)

    def verdict(self, blocked_by: StageResult | None = None) -> Verdict:
        duration = (time.perf_counter() - self.started) * 1000
        checks = merge_checks(self.checks)
        if blocked_by is None or blocked_by.blocking is None:
            return Verdict(
                allowed=True,
                stage=None,
                rail=None,
                reason=None,
                score=None,
                checks=checks,
                model_calls=tuple(self.calls),
                duration_ms=duration,
            )
        blocking = blocked_by.blocking
        return Verdict(
            allowed=False,
            stage="error" if blocked_by.failed else blocked_by.stage,
            rail=blocking.name,
            reason=blocking.reason,
            score=blocking.score,
            checks=checks,
            model_calls=tuple(self.calls),
            duration_ms=duration,
        )


class TurnGuard:
    _cache: dict[str, TurnGuard] = {}
    _cache_lock = threading.Lock()

    def __init__(self, settings: Settings, loaded: LoadedRails) -> None:
        self._settings = settings
        self._loaded = loaded
        self._runner = RailsRunner(
            loaded.rails,
            rail_timeout_s=settings.rail_timeout_s,
            flows={"input": loaded.input_flows, "output": loaded.output_flows},
        )
        self._chunk_size = settings.output_chunk_size
        self._context_size = min(settings.output_context_size, settings.output_chunk_size - 1)

    @classmethod
    def load(cls, settings: Settings) -> TurnGuard:
        """The guard for these settings, built once per process (loading rails/ is slow)."""
        key = hashlib.sha256(settings.model_dump_json().encode()).hexdigest()
        with cls._cache_lock:
            guard = cls._cache.get(key)
            if guard is None:
                guard = cls._cache[key] = cls(settings, load_rails(settings))
            return guard

    @classmethod
    def clear_cache(cls) -> None:
        with cls._cache_lock:
            cls._cache.clear()

    @property
    def input_rails(self) -> tuple[str, ...]:
        return self._loaded.input_flows

    @property
    def output_rails(self) -> tuple[str, ...]:
        return self._loaded.output_flows

    def _refusal(self, result: StageResult) -> str:
        if result.failed:
            return self._settings.refusal_error
        return self._settings.refusal_input if result.stage == "input" else self._settings.refusal_output

    async def check_text(self, text: str, stage: Literal["input", "output"]) -> Verdict:
        """Run one stage's rails on a text on its own (evaluation, API moderation)."""
        record = _Accumulator()
        if stage == "input":
            result = await self._runner.run("input", user_text=text)
        else:
            result = await self._runner.run("output", user_text="", bot_text=text)
        record.add(result)
        return record.verdict(result if result.blocked else None)

    async def stream_turn(
        self, history: Sequence[ChatTurn], params: GenerationParams
    ) -> AsyncIterator[GuardEvent]:
        """Guard one turn. Ends with exactly one TurnFinished.

        Rail failures end as a blocked verdict with stage "error"; model failures during the main generation
        propagate as the chat model's typed errors (webapp.llm.errors); cancellation stops the generation.
        """
        if not history or history[-1].role != "user":
            raise EmptyTurnError("a turn needs the newest user message as the last message of the history")
        user_text = history[-1].content
        record = _Accumulator()

        checked_in = await self._runner.run("input", user_text=user_text)
        record.add(checked_in)
        if checked_in.blocked:
            yield TurnFinished(record.verdict(checked_in), reply=self._refusal(checked_in), unsafe_text=user_text)
            return
        yield InputPassed(record.verdict())

        model = self._loaded.chat_model.bind(
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            max_new_tokens=params.max_new_tokens,
        )
        neutraliser = MarkupNeutraliser()
        shown: list[str] = []
        raw_reply: list[str] = []
        context: list[str] = []
        pending: list[str] = []

        async def check(tokens: list[str]) -> StageResult:
            result = await self._runner.run("output", user_text=user_text, bot_text="".join(context + tokens))
            record.add(result)
            return result

        stream = cast(AsyncGenerator, model.astream([_to_langchain(turn) for turn in history]))
        try:
            async for piece in stream:
                text = piece.content if isinstance(piece.content, str) else ""
                if not text:
                    continue
                pending.append(text)
                if len(context) + len(pending) < self._chunk_size:
                    continue
                result = await check(pending)
                if result.blocked:
                    async for event in self._finish_blocked(record, result, shown, raw_reply + pending):
                        yield event
                    return
                raw_reply.extend(pending)
                released = neutraliser.feed("".join(pending))
                if released:
                    shown.append(released)
                    yield Delta(released)
                context = (context + pending)[-self._context_size :] if self._context_size else []
                pending = []
        finally:
            await stream.aclose()

        if pending:  # the tail of the reply
            result = await check(pending)
            if result.blocked:
                async for event in self._finish_blocked(record, result, shown, raw_reply + pending):
                    yield event
                return
            raw_reply.extend(pending)
            released = neutraliser.feed("".join(pending))
            if released:
                shown.append(released)
                yield Delta(released)
        tail = neutraliser.finish()
        if tail:
            shown.append(tail)
            yield Delta(tail)
        if neutraliser.findings:
            record.checks.append(
                RailCheck(
                    name=MARKUP_RAIL,
                    stage="output",
                    duration_ms=0.0,
                    blocked=False,
                    reason=describe(dict(neutraliser.findings)),
                    score=None,
                )
            )
        yield TurnFinished(record.verdict(), reply="".join(shown), unsafe_text=None)

    async def _finish_blocked(
        self, record: _Accumulator, result: StageResult, shown: list[str], raw: list[str]
    ) -> AsyncIterator[GuardEvent]:
        if shown:
            yield Retract()
        yield TurnFinished(record.verdict(result), reply=self._refusal(result), unsafe_text="".join(raw))


async def guard_turn(
    guard: TurnGuard, history: Sequence[ChatTurn], params: GenerationParams
) -> TurnFinished:
    """Run a whole turn and return its end (for callers that do not stream)."""
    finished: TurnFinished | None = None
    async for event in guard.stream_turn(history, params):
        if isinstance(event, TurnFinished):
            finished = event
    assert finished is not None
    return finished

