"""Shadow replay: `guardchat eval replay --since DATE` runs today's rails over stored turns, without the model.

An operator sees what a rail or threshold change would have done to real traffic before turning it on. Each
stored exchange is judged again as the app judged it: the input rails on the user's message with its
conversation (system prompt and recent user turns), then, if that passes, the output rails on the reply as
it was streamed (for a blocked reply, the text the rails stopped). The report counts where today's decision
differs from the recorded one, by rail and by the moderator's verdict on the turn's flag, if any.

The model is never called: the self-check rails, which ask the guard model, are switched off for the replay,
so their past blocks show as "no longer blocked" and the report says so.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.guard.conversation import ConversationContext
from webapp.guard.turn import TurnGuard
from webapp.moderation.queue import as_utc
from webapp.settings import Settings
from webapp.store.models import Conversation, Flag, Message

REPLAYED_STATUSES = ("complete", "blocked", "interrupted")
ALLOWED = "allowed"


@dataclass(frozen=True)
class StoredTurn:
    reply_id: int
    user_text: str
    reply: str | None  # what the output rails saw; None when the input rails blocked the turn
    context: ConversationContext
    recorded: str  # "allowed" or the rail that blocked the turn
    label: str | None  # the moderator's verdict on the turn's flag: "confirmed", "dismissed" or None


def _recorded(verdict: dict[str, object] | None) -> str:
    if not verdict or verdict.get("allowed", True):
        return ALLOWED
    return str(verdict.get("rail") or verdict.get("stage") or "blocked")


def stored_turns(session: Session, *, since: datetime | None, limit: int, window_turns: int) -> list[StoredTurn]:
    """Up to ``limit`` exchanges whose reply was written at or after ``since``, oldest first."""
    query = select(Message).where(Message.role == "assistant", Message.status.in_(REPLAYED_STATUSES), Message.seq >= 0)
    if since is not None:
        query = query.where(Message.created_at >= as_utc(since))
    replies = list(session.scalars(query.order_by(Message.id).limit(limit)))
    conversation_ids = sorted({r.conversation_id for r in replies})
    by_conversation: dict[int, list[Message]] = defaultdict(list)
    prompts: dict[int, str] = {}
    labels: dict[int, str] = {}
    for start in range(0, len(conversation_ids), 500):
        chunk = conversation_ids[start : start + 500]
        for m in session.scalars(
            select(Message).where(Message.conversation_id.in_(chunk), Message.seq >= 0).order_by(Message.seq)
        ):
            by_conversation[m.conversation_id].append(m)
        for conversation_id, prompt in session.execute(
            select(Conversation.id, Conversation.system_prompt).where(Conversation.id.in_(chunk))
        ).tuples():
            prompts[conversation_id] = prompt
        for message_id, status in session.execute(
            select(Flag.message_id, Flag.status).where(
                Flag.conversation_id.in_(chunk), Flag.status.in_(("confirmed", "dismissed"))
            )
        ).tuples():
            if message_id is not None:
                labels[message_id] = status
    turns = []
    for reply in replies:
        before = [m for m in by_conversation[reply.conversation_id] if m.seq < reply.seq and m.role == "user"]
        if not before:
            continue
        asked, earlier = before[-1], [m.content for m in before[:-1] if m.status == "complete"]
        verdict = reply.verdict or {}
        recorded = _recorded(verdict)
        blocked_at_input = verdict.get("stage") == "input" or asked.status == "blocked"
        shown = verdict.get("blocked_text") if recorded != ALLOWED else reply.content
        turns.append(
            StoredTurn(
                reply_id=reply.id,
                user_text=asked.content,
                reply=None if blocked_at_input else (shown if isinstance(shown, str) else reply.content),
                context=ConversationContext(
                    system_prompt=(prompts.get(reply.conversation_id) or "").strip(),
                    earlier_user_turns=tuple(earlier[-window_turns:]) if window_turns > 0 else (),
                ),
                recorded=recorded,
                label=labels.get(reply.id) or labels.get(asked.id),
            )
        )
    return turns


@dataclass
class ReplayReport:
    turns: int = 0
    # (recorded, today) -> count, where each is "allowed" or a rail name
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)
    # (recorded, today, moderator label or "unlabelled") -> count, changed decisions only
    changed: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def unchanged(self) -> int:
        return sum(n for (was, now), n in self.decisions.items() if (was == ALLOWED) == (now == ALLOWED))


async def _judge(guard: TurnGuard, turn: StoredTurn) -> str:
    checked = await guard.check_input(turn.user_text, turn.context)
    if checked.blocking is not None:
        return checked.blocking.name
    if not turn.reply:
        return ALLOWED
    finished = await guard.replay_reply(turn.user_text, turn.reply)
    return ALLOWED if finished.verdict.allowed else str(finished.verdict.rail or "blocked")


def replay_settings(settings: Settings) -> Settings:
    """Today's settings without the rails that call the guard model."""
    return settings.model_copy(update={"self_check_rails": False})


async def replay(
    guard: TurnGuard,
    turns: Sequence[StoredTurn],
    *,
    concurrency: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    report = ReplayReport(turns=len(turns))
    limit = asyncio.Semaphore(concurrency)
    done = 0
    started = asyncio.get_running_loop().time()

    async def one(turn: StoredTurn) -> None:
        nonlocal done
        async with limit:
            today = await _judge(guard, turn)
        report.decisions[(turn.recorded, today)] += 1
        if (turn.recorded == ALLOWED) != (today == ALLOWED):
            report.changed[(turn.recorded, today, turn.label or "unlabelled")] += 1
        done += 1
        if progress is not None:
            progress(done, len(turns))

    await asyncio.gather(*(one(t) for t in turns))
    report.seconds = asyncio.get_running_loop().time() - started
    return report


def format_report(report: ReplayReport, *, self_check_was_on: bool) -> str:
    lines = [
        "## Shadow replay of stored turns (no model calls)",
        "",
        f"{report.turns} turns replayed in {report.seconds:.1f} s; {report.unchanged} decided as recorded, "
        f"{report.turns - report.unchanged} differently.",
    ]
    if self_check_was_on:
        lines.append("The self-check rails ask the guard model, so they are off here: their blocks show as allowed.")
    lines += ["", "| recorded | today | moderator's verdict | turns |", "|---|---|---|---|"]
    for (was, now, label), n in sorted(report.changed.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"| {was} | {now} | {label} | {n} |")
    if not report.changed:
        lines.append("| — | — | — | 0 |")
    lines += ["", "| recorded | today | turns |", "|---|---|---|"]
    for (was, now), n in sorted(report.decisions.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"| {was} | {now} | {n} |")
    return "\n".join(lines)
