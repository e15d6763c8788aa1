"""Guard one chat turn: input rails, then the model's stream, released chunk by chunk only after output rails.

The main generation is not NeMo's: ``generate_async``/``stream_async`` without a generator would prompt the
model through NeMo's ``general`` task prompt instead of our system prompt and history, and ``passthrough``
mode has no streaming output rails with a verdict. So a turn is:
1. the input rails on the newest user message (NeMo's rail actions, webapp/guard/runner.py); the model sees
   nothing before they pass;
2. the real conversation streamed from the chat model (registry seam, with the turn's sampling parameters);
3. that stream grouped into chunks (webapp/guard/chunks.py: a small first chunk for a fast first token, then
   doubling), each checked by every output rail together with ``output_context_size`` tokens before it, and
   released only when all passed. A block retracts what was shown and stops the model. The markup rail's
   rewrite is applied to the released text by the same neutraliser.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from webapp.guard.chunks import TokenQueue, reply_chunks
from webapp.guard.conversation import ConversationContext
from webapp.guard.loader import LoadedRails, load_rails
from webapp.guard.markup import MarkupNeutraliser, describe
from webapp.guard.runner import RailsRunner, StageResult
from webapp.guard.verdict import ModelCall, RailCheck, Verdict, merge_checks
from webapp.llm.params import GenerationParams
from webapp.llm.registry import TextStreamingModel
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


def conversation_of(earlier: Sequence[ChatTurn], *, client_sent: bool, window_turns: int = 4) -> ConversationContext:
    """The context of a new message: ``earlier`` is everything the model sees before it."""
    system = next((t.content for t in earlier if t.role == "system"), "")
    return ConversationContext.from_turns(
        system_prompt=system,
        turns=[(t.role, t.content) for t in earlier if t.role != "system"],
        window_turns=window_turns,
        assistant_turns_are_client_sent=client_sent,
    )


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

    def relabel(self, rail: str, reason: str) -> None:
        """``rail``'s reason as seen on the whole shown reply (its checks saw overlapping chunks)."""
        self.checks = [
            dataclasses.replace(c, reason=reason) if c.name == rail and not c.blocked else c for c in self.checks
        ]

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
            flow_actions=loaded.flow_actions,
        )

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

    async def check_input(self, user_text: str, conversation: ConversationContext | None = None) -> StageResult:
        """The input rails on a user message and the conversation the model will see with it (a turn's first
        stage; see ``stream_turn``'s ``checked_input``)."""
        return await self._runner.run("input", user_text=user_text, conversation=conversation)

    async def stream_turn(
        self,
        history: Sequence[ChatTurn],
        params: GenerationParams,
        *,
        checked_input: Awaitable[StageResult] | None = None,
    ) -> AsyncIterator[GuardEvent]:
        """Guard one turn. Ends with exactly one TurnFinished.

        ``checked_input``: ``check_input`` on the newest user message, started earlier by the caller (so the
        rails run while the caller saves the turn); the model is called only after it passed.
        Rail failures end as a blocked verdict with stage "error"; model failures during the main generation
        propagate as the chat model's typed errors (webapp.llm.errors); cancellation stops the generation.
        """
        if not history or history[-1].role != "user":
            raise EmptyTurnError("a turn needs the newest user message as the last message of the history")
        user_text = history[-1].content
        record = _Accumulator()

        if checked_input is None:
            context = conversation_of(history[:-1], client_sent=False, window_turns=self._settings.input_window_turns)
            checked_input = self.check_input(user_text, context)
        checked_in = await checked_input
        record.add(checked_in)
        if checked_in.blocked:
            yield TurnFinished(record.verdict(checked_in), reply=self._refusal(checked_in), unsafe_text=user_text)
            return
        yield InputPassed(record.verdict())

        async for event in self._stream_reply(history, params, user_text, record):
            yield event

    async def replay_reply(self, user_text: str, reply: str) -> TurnFinished:
        """The output rails on a given reply, streamed word by word through the same chunk path as a model's
        reply (evaluation of output rails without a model)."""
        pieces = re.findall(r"\s*\S+", reply) or [reply]

        async def words() -> AsyncIterator[str]:
            for piece in pieces:
                yield piece

        record = _Accumulator()
        history = [ChatTurn("user", user_text)]
        params = GenerationParams.defaults(self._settings)
        finished: TurnFinished | None = None
        async for event in self._stream_reply(history, params, user_text, record, deltas=words()):
            if isinstance(event, TurnFinished):
                finished = event
        assert finished is not None
        return finished

    async def _generate(
        self,
        history: Sequence[ChatTurn],
        params: GenerationParams,
        out: TokenQueue,
        deltas: AsyncIterator[str] | None = None,
    ) -> None:
        """Stream the chat model's reply to the real conversation into ``out`` (None ends it).

        Runs as its own task, so cancelling it cancels the request at the model (LangChain does not close the
        model's stream promptly when its consumer stops reading, e.g. after a block).
        """
        try:
            async for delta in deltas if deltas is not None else self._deltas(history, params):
                if delta:
                    out.put_nowait(delta)
        except Exception as exc:
            out.put_nowait(exc)
        else:
            out.put_nowait(None)

    async def _deltas(self, history: Sequence[ChatTurn], params: GenerationParams) -> AsyncIterator[str]:
        model = self._loaded.chat_model
        messages = [_to_langchain(turn) for turn in history]
        sampling: dict[str, Any] = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "max_new_tokens": params.max_new_tokens,
        }
        if params.stop:
            sampling["stop"] = list(params.stop)
        if isinstance(model, TextStreamingModel):
            async with contextlib.aclosing(model.stream_text(messages, **sampling)) as deltas:
                async for delta in deltas:
                    yield delta
            return
        async for piece in model.bind(**sampling).astream(messages):
            if isinstance(piece.content, str):
                yield piece.content

    async def _stream_reply(
        self,
        history: Sequence[ChatTurn],
        params: GenerationParams,
        user_text: str,
        record: _Accumulator,
        *,
        deltas: AsyncIterator[str] | None = None,
    ) -> AsyncIterator[GuardEvent]:
        raw: list[str] = []
        generated: TokenQueue = asyncio.Queue()
        neutraliser = MarkupNeutraliser()
        shown: list[str] = []
        blocked: StageResult | None = None
        context_size = self._settings.output_context_size
        chunks = reply_chunks(
            generated,
            first=min(self._settings.output_first_chunk_size, self._settings.output_chunk_size),
            largest=self._settings.output_chunk_size,
        )
        producer = asyncio.create_task(self._generate(history, params, generated, deltas))
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    context = "".join(raw[-context_size:]) if context_size else ""
                    text = "".join(chunk)
                    raw.extend(chunk)
                    if self._runner.has_rails("output"):
                        result = await self._runner.run("output", user_text=user_text, bot_text=context + text)
                        record.add(result)
                        if result.blocked:
                            blocked = result
                            break
                    # Checked: released now, as one Delta per chunk.
                    released = neutraliser.feed(text)
                    if released:
                        shown.append(released)
                        yield Delta(released)
        finally:
            # After a block, an error or a cancellation the model must stop generating now.
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer

        if neutraliser.findings:
            record.relabel(MARKUP_RAIL, describe(dict(neutraliser.findings)))
        if blocked is not None:
            if shown:
                yield Retract()
            yield TurnFinished(record.verdict(blocked), reply=self._refusal(blocked), unsafe_text="".join(raw))
            return
        tail = neutraliser.finish()
        if tail:
            shown.append(tail)
            yield Delta(tail)
        yield TurnFinished(record.verdict(), reply="".join(shown), unsafe_text=None)


async def guard_turn(guard: TurnGuard, history: Sequence[ChatTurn], params: GenerationParams) -> TurnFinished:
    """Run a whole turn and return its end (for callers that do not stream)."""
    finished: TurnFinished | None = None
    async for event in guard.stream_turn(history, params):
        if isinstance(event, TurnFinished):
            finished = event
    assert finished is not None
    return finished
