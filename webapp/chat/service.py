"""ChatService: the one owner of a turn, for the UI and the API alike.

persist user message (pending) + assistant placeholder (streaming) → input rails → model stream →
output rails per chunk → checked deltas to the caller → assistant message final status → flag if blocked.
Database work runs in worker threads so the event loop never waits on SQLite or PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pydantic import ValidationError

from webapp.chat import metrics
from webapp.chat.checkpoints import StreamCheckpoints
from webapp.chat.events import (
    ChatEvent,
    InputChecked,
    ReplyDelta,
    ReplyRetracted,
    TurnEnded,
    TurnStarted,
    TurnStatus,
)
from webapp.chat.limits import TurnLimits, check_turn_allowed, clean_message
from webapp.guard.conversation import ConversationContext
from webapp.guard.runner import StageResult
from webapp.guard.turn import Delta, InputPassed, Retract, TurnFinished
from webapp.guard.verdict import Verdict
from webapp.llm.errors import (
    LLMError,
    ModelNotReadyError,
    PromptTooLongError,
    TritonTimeoutError,
    TritonUnavailableError,
)
from webapp.llm.generation import FinishReason, GenerationRecord, observe_generation
from webapp.llm.params import GenerationParams
from webapp.llm.templates import ChatTurn, get_template
from webapp.llm.tokens import TokenCounter, counter_for
from webapp.settings import Settings
from webapp.store import conversations as conv
from webapp.store.engine import Database
from webapp.store.errors import InvalidInputError
from webapp.store.flags import raise_flag
from webapp.store.models import User

log = logging.getLogger("guardchat.turn")

TITLE_CHARS = 60
FLAG_SOURCE_BY_STAGE = {"input": "input_rail", "output": "output_rail", "error": "rail_error"}


def describe_model_failure(exc: LLMError) -> tuple[str, str]:
    """(error_code, the message the user sees) for a model failure; the message keeps the cause."""
    if isinstance(exc, TritonUnavailableError | ModelNotReadyError):
        return "model_unavailable", f"Model unavailable, so no reply was written: {exc} Please try again shortly."
    if isinstance(exc, TritonTimeoutError):
        return "model_timeout", f"Model unavailable (no answer in time), so the reply stopped: {exc}"
    if isinstance(exc, PromptTooLongError):
        return "prompt_too_long", str(exc)
    return "model_error", f"The model failed: {exc}"


class TurnGuardLike(Protocol):
    def check_input(
        self, user_text: str, conversation: ConversationContext | None = None
    ) -> Awaitable[StageResult]: ...

    def stream_turn(
        self,
        history: Sequence[ChatTurn],
        params: GenerationParams,
        *,
        checked_input: Awaitable[StageResult] | None = None,
    ) -> AsyncIterator[Delta | InputPassed | Retract | TurnFinished]: ...


@dataclass(frozen=True)
class _Prepared:
    conversation_id: int
    user_message_id: int
    assistant_message_id: int
    history: list[ChatTurn]
    params: GenerationParams


class MessageLike(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def status(self) -> str: ...


def history_for_model(system_prompt: str, messages: Sequence[MessageLike]) -> list[ChatTurn]:
    """The turns the model sees: refused and failed exchanges are left out, so it never sees them again."""
    turns: list[ChatTurn] = [ChatTurn("system", system_prompt)] if system_prompt.strip() else []
    pending_user: MessageLike | None = None
    for message in messages:
        if message.role == "user":
            pending_user = message if message.status in ("complete", "interrupted") else None
        elif message.role == "assistant" and pending_user is not None:
            if message.status in ("complete", "interrupted") and message.content.strip():
                # An interrupted reply still belongs to the conversation the user saw.
                turns.append(ChatTurn("user", pending_user.content))
                turns.append(ChatTurn("assistant", message.content))
            pending_user = None
    return turns


def params_for(settings: Settings, sampling: dict[str, Any]) -> GenerationParams:
    defaults = GenerationParams.defaults(settings).model_dump()
    merged = {**defaults, **{k: v for k, v in sampling.items() if k in defaults and v is not None}}
    try:
        params = GenerationParams(**merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "value"
        raise InvalidInputError(f"invalid generation settings: {field}: {error['msg']}") from None
    if params.max_new_tokens > settings.max_output_tokens_limit:
        raise InvalidInputError(
            f"max new tokens {params.max_new_tokens} is above the limit {settings.max_output_tokens_limit}"
        )
    return params


class ChatService:
    def __init__(
        self, *, database: Database, guard: TurnGuardLike, settings: Settings, instance_id: int | None = None
    ) -> None:
        self.db = database
        # Stamped on streaming replies so start-up recovery can tell live processes' streams from dead ones'.
        self.instance_id = instance_id
        self.guard = guard
        self.settings = settings
        self.limits = TurnLimits.from_settings(settings)
        self.tokens: TokenCounter = counter_for(settings)
        self.checkpoints = StreamCheckpoints(database, interval_s=settings.stream_save_interval_s)

    # --- one turn -----------------------------------------------------------------------------

    async def send(
        self,
        *,
        user: User,
        text: str,
        conversation_id: int | None = None,
        sampling: dict[str, Any] | None = None,
        system_prompt: str | None = None,
        earlier_turns: Sequence[ChatTurn] = (),
        stop: Sequence[str] = (),
    ) -> AsyncGenerator[ChatEvent, None]:
        """Run one turn. Raises LimitError / NotFoundError / InvalidInputError before anything is saved.

        ``earlier_turns`` (API clients that send a whole history) are saved into a new conversation first.
        ``stop``: strings that end this reply (the model stops there); not saved with the conversation.
        """
        content = clean_message(text, max_chars=self.limits.max_message_chars)
        if earlier_turns and conversation_id is not None:
            raise InvalidInputError("send either earlier turns or a conversation id, not both")
        for turn in earlier_turns:
            clean_message(turn.content, max_chars=self.limits.max_message_chars)
        # The input rails need the message and what the model sees with it (system prompt, recent user turns,
        # client-sent assistant turns): they run while the turn is saved (the model waits for both).
        checked_input = asyncio.ensure_future(
            self._check_input(user, content, conversation_id, system_prompt, earlier_turns)
        )
        try:
            prepared = await asyncio.to_thread(
                self._prepare, user, content, conversation_id, sampling or {}, system_prompt, earlier_turns
            )
            if stop:
                prepared = replace(prepared, params=prepared.params.model_copy(update={"stop": tuple(stop)}))
            # aclosing: a caller that stops iterating (Stop button, disconnect) closes the turn at once, so
            # its partial reply is saved now rather than whenever the abandoned generator is collected.
            async with contextlib.aclosing(self._run(user, prepared, checked_input)) as events:
                async for event in events:
                    yield event
        finally:
            checked_input.cancel()

    async def _check_input(
        self,
        user: User,
        content: str,
        conversation_id: int | None,
        system_prompt: str | None,
        earlier_turns: Sequence[ChatTurn],
    ) -> StageResult:
        window = self.settings.input_window_turns
        if conversation_id is None:
            # Everything here came from the client: an operator's default system prompt is not checked.
            context = ConversationContext.from_turns(
                system_prompt=system_prompt or "",
                turns=[(t.role, t.content) for t in earlier_turns],
                window_turns=window,
                assistant_turns_are_client_sent=True,
            )
        else:
            context = await asyncio.to_thread(self._stored_context, user, conversation_id)
        return await self.guard.check_input(content, context)

    def _stored_context(self, user: User, conversation_id: int) -> ConversationContext:
        """A stored conversation's system prompt and its recent user turns (the model wrote its replies)."""
        with self.db.read() as session:
            conversation = conv.get_conversation(session, user=user, conversation_id=conversation_id)
            if conversation is None:
                return ConversationContext()  # _prepare reports the unknown conversation
            recent = conv.recent_user_messages(
                session, user=user, conversation_id=conversation_id, limit=self.settings.input_window_turns
            )
            return ConversationContext(
                system_prompt=conversation.system_prompt.strip(),
                earlier_user_turns=tuple(m.content for m in recent),
            )

    async def regenerate(self, *, user: User, conversation_id: int) -> AsyncGenerator[ChatEvent, None]:
        """Replace the last reply: the last user message is sent again."""
        last_user = await asyncio.to_thread(self._take_last_exchange, user, conversation_id)
        async with contextlib.aclosing(self.send(user=user, text=last_user, conversation_id=conversation_id)) as events:
            async for event in events:
                yield event

    async def edit_last(self, *, user: User, conversation_id: int, text: str) -> AsyncGenerator[ChatEvent, None]:
        """Replace the last user message (and its reply) with ``text`` and send it."""
        clean_message(text, max_chars=self.limits.max_message_chars)
        await asyncio.to_thread(self._take_last_exchange, user, conversation_id)
        async with contextlib.aclosing(self.send(user=user, text=text, conversation_id=conversation_id)) as events:
            async for event in events:
                yield event

    def _take_last_exchange(self, user: User, conversation_id: int) -> str:
        with self.db.write() as session:
            messages = conv.list_messages(session, user=user, conversation_id=conversation_id)
            users_msgs = [m for m in messages if m.role == "user"]
            if not users_msgs:
                raise InvalidInputError("this conversation has no message to resend")
            last = users_msgs[-1]
            conv.remove_messages_from(session, user=user, conversation_id=conversation_id, seq=last.seq)
            return last.content

    def _prepare(
        self,
        user: User,
        content: str,
        conversation_id: int | None,
        sampling: dict[str, Any],
        system_prompt: str | None,
        earlier_turns: Sequence[ChatTurn] = (),
    ) -> _Prepared:
        exchange = [
            conv.NewMessage(role="user", content=content, status="pending"),
            conv.NewMessage(
                role="assistant",
                content="",
                status="streaming",
                verdict={"stream_owner": self.instance_id} if self.instance_id is not None else None,
            ),
        ]
        if conversation_id is None:
            # A new conversation holds only what this request brings: its history needs no read.
            earlier = [conv.NewMessage(role=turn.role, content=turn.content) for turn in earlier_turns]
            system = self.settings.system_prompt if system_prompt is None else system_prompt
            params = params_for(self.settings, sampling)
            history = history_for_model(system, earlier)
        with self.db.write() as session:
            check_turn_allowed(session, user=user, limits=self.limits)
            if conversation_id is None:
                conversation, rows = conv.start_conversation(
                    session,
                    user=user,
                    title=content.splitlines()[0][:TITLE_CHARS] or "New chat",
                    system_prompt=system,
                    sampling=sampling,
                    messages=[*earlier, *exchange],
                )
            else:
                conversation = conv.require_conversation(session, user=user, conversation_id=conversation_id)
                params = params_for(self.settings, {**conversation.sampling, **sampling})
                prior = conv.list_messages(session, user=user, conversation_id=conversation.id)
                history = history_for_model(conversation.system_prompt, prior)
                rows = conv.append_messages(session, user=user, conversation_id=conversation.id, messages=exchange)
            history.append(ChatTurn("user", content))
            *_, user_msg, reply = rows
            return _Prepared(conversation.id, user_msg.id, reply.id, history, params)

    async def _run(
        self, user: User, p: _Prepared, checked_input: Awaitable[StageResult]
    ) -> AsyncGenerator[ChatEvent, None]:
        started = time.perf_counter()
        yield TurnStarted(p.conversation_id, p.user_message_id, p.assistant_message_id)
        shown = _ShownReply(self.checkpoints, user, p.assistant_message_id, started)
        generation = GenerationRecord()  # the chat model reports here how its reply ended
        reached_model = False  # the input rails passed, so the model was asked
        finished = False
        metrics.ACTIVE_STREAMS.inc()
        try:
            guarded = self.guard.stream_turn(p.history, p.params, checked_input=checked_input)
            async with contextlib.aclosing(observe_generation(guarded, generation)) as events:
                async for event in events:
                    if isinstance(event, TurnFinished):
                        latency = int((time.perf_counter() - started) * 1000)
                        ended = await asyncio.to_thread(
                            self._finish, user, p, event, latency, generation, reached_model
                        )
                        finished = True
                        record_turn(ended, event.verdict)
                        log.info(
                            "turn %s",
                            ended.status,
                            extra={
                                "user_id": user.id,
                                "conversation_id": p.conversation_id,
                                "message_id": p.assistant_message_id,
                                "status": ended.status,
                                "stage": event.verdict.stage,
                                "rail": event.verdict.rail,
                                "latency_ms": latency,
                                "tokens_in": ended.tokens_in,
                                "tokens_out": ended.tokens_out,
                            },
                        )
                        yield ended
                        return
                    reached_model = reached_model or isinstance(event, InputPassed)
                    relayed = shown.relay(event)
                    if relayed is not None:
                        yield relayed
            raise RuntimeError("the guard ended a turn without a verdict")
        except LLMError as exc:
            code, message = describe_model_failure(exc)
            ended = await asyncio.to_thread(self._fail, user, p, message, shown.text, code)
            finished = True
            metrics.TURNS.labels("error").inc()
            log.warning("turn error: %s", exc, extra={"user_id": user.id, "conversation_id": p.conversation_id})
            yield ended
        except (asyncio.CancelledError, GeneratorExit):
            if not finished:
                # The caller stopped (Stop button, disconnect): keep what was shown, marked interrupted.
                metrics.TURNS.labels("interrupted").inc()
                await asyncio.shield(asyncio.to_thread(self._interrupt, user, p, shown.text, started))
            raise
        except Exception as exc:
            if not finished:
                log.exception("turn failed", extra={"conversation_id": p.conversation_id})
                ended = await asyncio.to_thread(
                    self._fail, user, p, f"the turn failed: {type(exc).__name__}", shown.text, "internal_error"
                )
                metrics.TURNS.labels("error").inc()
                yield ended
        finally:
            shown.close()
            metrics.ACTIVE_STREAMS.dec()

    # --- persistence steps (worker threads) ---------------------------------------------------

    def _usage(
        self, p: _Prepared, event: TurnFinished, generation: GenerationRecord, reached_model: bool
    ) -> tuple[int, int]:
        """(tokens the model received, tokens it wrote) for a finished turn."""
        if not reached_model:
            # Blocked before the model saw anything: usage counts what the model processed (as OpenAI's does,
            # and clients add it up as spend), so a refused prompt is 0, not the tokens it would have cost.
            return 0, 0
        if generation.outcome is not None:
            return generation.outcome.prompt_tokens, generation.outcome.completion_tokens
        # A chat model that reports nothing (not the Triton one): count the prompt it was given and its reply.
        prompt = get_template(self.settings.prompt_template).render(p.history)
        written = event.reply if event.verdict.allowed else event.unsafe_text or ""
        return self.tokens.count(prompt), self.tokens.count(written)

    def _finish(
        self,
        user: User,
        p: _Prepared,
        event: TurnFinished,
        latency_ms: int,
        generation: GenerationRecord,
        reached_model: bool,
    ) -> TurnEnded:
        verdict: Verdict = event.verdict
        verdict_json = verdict.to_json()
        stage = verdict.stage
        status: TurnStatus = "complete" if verdict.allowed else "blocked"
        tokens_in, tokens_out = self._usage(p, event, generation, reached_model)
        finish_reason: FinishReason | None = None
        if verdict.allowed:
            # A model that does not say why it stopped ended by itself, as far as anyone can tell.
            finish_reason = (generation.outcome.finish_reason if generation.outcome else None) or "stop"
        with self.db.write() as session:
            if not verdict.allowed and event.unsafe_text is not None:
                verdict_json["blocked_text"] = event.unsafe_text
            user_status = {"input": "blocked", "error": "error"}.get(stage or "", "complete")
            reply: dict[str, Any] = {
                "content": event.reply,
                "verdict": verdict_json,
                "latency_ms": latency_ms,
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
            }
            flagged = False
            if verdict.allowed or stage is None:
                # Nothing to flag, so no Message objects: one UPDATE per message instead of a load and a flush.
                conv.update_message(session, user=user, message_id=p.user_message_id, status=user_status)
                conv.update_message(session, user=user, message_id=p.assistant_message_id, status=status, **reply)
            else:
                conv.finish_message(session, user=user, message_id=p.user_message_id, status=user_status)
                message = conv.finish_message(
                    session, user=user, message_id=p.assistant_message_id, status=status, **reply
                )
                flagged_text = event.unsafe_text or ""
                target = message
                if stage == "input":
                    target = conv.require_message(session, user=user, message_id=p.user_message_id)
                raise_flag(
                    session,
                    message=target,
                    owner_id=user.id,
                    source=FLAG_SOURCE_BY_STAGE[stage],
                    rail=verdict.rail,
                    reason=verdict.reason or "",
                    text=flagged_text,
                )
                flagged = True
        return TurnEnded(
            status=status,
            reply=event.reply,
            conversation_id=p.conversation_id,
            assistant_message_id=p.assistant_message_id,
            verdict=verdict_json_public(verdict_json),
            flagged=flagged,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            finish_reason=finish_reason,
            checks=list(verdict_json.get("checks", [])),
        )

    def _fail(self, user: User, p: _Prepared, error: str, partial: str, code: str) -> TurnEnded:
        with self.db.write() as session:
            user_msg = conv.require_message(session, user=user, message_id=p.user_message_id)
            if user_msg.status == "pending":
                user_msg.status = "error"
            conv.finish_message(session, user=user, message_id=p.assistant_message_id, status="error", content=partial)
        return TurnEnded(
            status="error",
            reply=partial,
            conversation_id=p.conversation_id,
            assistant_message_id=p.assistant_message_id,
            error=error,
            error_code=code,
        )

    def _interrupt(self, user: User, p: _Prepared, partial: str, started: float) -> None:
        with self.db.write() as session:
            user_msg = conv.require_message(session, user=user, message_id=p.user_message_id)
            if user_msg.status == "pending":
                user_msg.status = "complete"
            conv.finish_message(
                session,
                user=user,
                message_id=p.assistant_message_id,
                status="interrupted",
                content=partial,
                latency_ms=int((time.perf_counter() - started) * 1000),
            )


class _ShownReply:
    """The reply as the user has seen it so far: what the stream checkpoints (webapp/chat/checkpoints.py) save
    in the background, never awaited by the stream, and what a failed or interrupted turn keeps."""

    def __init__(self, checkpoints: StreamCheckpoints, user: User, message_id: int, started: float) -> None:
        self._pieces: list[str] = []
        self._checkpoints = checkpoints
        self._message_id = message_id
        self._started = started
        self._first_token = True
        checkpoints.begin(user, message_id)

    def close(self) -> None:
        """The turn has its final status: no more checkpoints."""
        self._checkpoints.end(self._message_id)

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def relay(self, event: Delta | InputPassed | Retract) -> ChatEvent | None:
        """The caller's event for one guard event before the verdict (None for any other event)."""
        if isinstance(event, InputPassed):
            # The user message's status is written with the reply, keeping the DB off this path.
            return InputChecked()
        if isinstance(event, Delta):
            self._show(event.text)
            return ReplyDelta(event.text)
        if isinstance(event, Retract):
            self._pieces.clear()
            # At once: a retraction must not survive a crash in the saved text.
            self._checkpoints.offer(self._message_id, self._pieces, now=True)
            return ReplyRetracted()
        return None

    def _show(self, text: str) -> None:
        if self._first_token:
            metrics.TTFT_SECONDS.observe(time.perf_counter() - self._started)
            self._first_token = False
        self._pieces.append(text)
        self._checkpoints.offer(self._message_id, self._pieces)


def record_turn(ended: TurnEnded, verdict: Verdict) -> None:
    metrics.TURNS.labels(ended.status).inc()
    if not verdict.allowed:
        metrics.BLOCKS.labels(verdict.stage or "unknown", verdict.rail or "unknown").inc()
    for check in verdict.checks:
        metrics.RAIL_SECONDS.labels(check.name, check.stage).observe(check.duration_ms / 1000)
    metrics.TOKENS.labels("in").inc(ended.tokens_in or 0)
    metrics.TOKENS.labels("out").inc(ended.tokens_out or 0)


def verdict_json_public(verdict: dict[str, Any]) -> dict[str, Any]:
    """The verdict as the message's owner may see it: never the blocked text or self-check prompts."""
    return {k: v for k, v in verdict.items() if k not in ("blocked_text", "model_calls")}
