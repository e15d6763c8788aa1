"""The guard's quality as moderators' verdicts measure it: per rail and week, and at thresholds near today's.

A confirmed rail block is a true positive and a dismissed one a false refusal, so the confirmed share of a
rail's resolved flags is its measured precision. A user report that moderators confirmed on a reply the
rails allowed is a miss. Every rate comes with the counts behind it, so a rate from three flags is not read
as a trend.

Threshold suggestions use the score each learned rail recorded in the turn's verdict, blocked or not: at a
threshold t, the known positives it would catch are the confirmed blocks and confirmed misses that scored
t or more, and its false refusals the dismissed blocks that did. They only suggest: a threshold stays a
setting.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.moderation.queue import as_utc
from webapp.store.models import Flag, Message, User
from webapp.store.permissions import require_staff

RAIL_SOURCES = ("input_rail", "output_rail")
MISSES = "user reports (confirmed: a miss)"


@dataclass(frozen=True)
class RailWeek:
    week: date  # the Monday the week starts on (UTC)
    rail: str  # a rail's name, or MISSES
    flags: int  # blocks raised that week (for MISSES: user reports)
    confirmed: int
    dismissed: int

    @property
    def precision(self) -> float | None:
        """Confirmed share of the resolved flags; None when none is resolved yet."""
        resolved = self.confirmed + self.dismissed
        return self.confirmed / resolved if resolved else None


@dataclass(frozen=True)
class ThresholdPoint:
    threshold: float
    caught: int  # known positives scoring at least the threshold
    positives: int  # all known positives: confirmed blocks and confirmed misses with a score from this rail
    false_refusals: int  # dismissed blocks scoring at least the threshold

    @property
    def precision(self) -> float | None:
        judged = self.caught + self.false_refusals
        return self.caught / judged if judged else None

    @property
    def recall(self) -> float | None:
        return self.caught / self.positives if self.positives else None


@dataclass(frozen=True)
class _Labelled:
    flag: Flag
    verdict: dict[str, Any]


def _monday(moment: datetime) -> date:
    day = as_utc(moment).date()
    return day - timedelta(days=day.weekday())


def _flags(session: Session, since: datetime, until: datetime) -> list[_Labelled]:
    """Rail flags and user reports in the window, each with the verdict of its turn."""
    flags = list(
        session.scalars(
            select(Flag).where(
                Flag.source.in_((*RAIL_SOURCES, "user_report")),
                Flag.created_at >= as_utc(since),
                Flag.created_at < as_utc(until),
            )
        )
    )
    ids = {f.message_id for f in flags if f.message_id is not None}
    flagged = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))} if ids else {}
    # An input block flags the user's message; its verdict is on the reply that follows it.
    users = [m for m in flagged.values() if m.role == "user"]
    replies: dict[tuple[int, int], Message] = {}
    if users:
        for reply in session.scalars(
            select(Message).where(
                Message.role == "assistant", Message.conversation_id.in_({m.conversation_id for m in users})
            )
        ):
            replies[(reply.conversation_id, reply.seq)] = reply
    out = []
    for flag in flags:
        message = flagged.get(flag.message_id or -1)
        if message is not None and message.role == "user":
            message = replies.get((message.conversation_id, message.seq + 1))
        out.append(_Labelled(flag, (message.verdict if message is not None else None) or {}))
    return out


def rail_weeks(session: Session, *, actor: User, since: datetime, until: datetime) -> list[RailWeek]:
    """Per week and rail: blocks and their verdicts; plus the misses users reported, per week."""
    require_staff(session, actor)
    counts: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for item in _flags(session, since, until):
        flag = item.flag
        rail = MISSES if flag.source == "user_report" else flag.rail or flag.source
        row = counts[(_monday(flag.created_at), rail)]
        row[0] += 1
        row[1] += flag.status == "confirmed"
        row[2] += flag.status == "dismissed"
    return [RailWeek(week, rail, *row) for (week, rail), row in sorted(counts.items())]


def _score(verdict: dict[str, Any], rail: str) -> float | None:
    for check in verdict.get("checks") or ():
        if check.get("name") == rail and check.get("score") is not None:
            return float(check["score"])
    return None


def threshold_points(
    session: Session,
    *,
    actor: User,
    rail: str,
    thresholds: Iterable[float],
    since: datetime,
    until: datetime,
) -> list[ThresholdPoint]:
    """What moderators' labels say ``rail`` would do at each threshold."""
    require_staff(session, actor)
    positives: list[float] = []
    negatives: list[float] = []
    for item in _flags(session, since, until):
        flag = item.flag
        score = _score(item.verdict, rail)
        if score is None or flag.status not in ("confirmed", "dismissed"):
            continue
        if flag.source == "user_report":
            if flag.status == "confirmed":
                positives.append(score)
        elif flag.rail == rail:
            (positives if flag.status == "confirmed" else negatives).append(score)
    return [
        ThresholdPoint(t, sum(s >= t for s in positives), len(positives), sum(s >= t for s in negatives))
        for t in sorted(thresholds)
    ]


def thresholds_around(current: float, steps: Sequence[float] = (-0.1, -0.05, 0.0, 0.05)) -> list[float]:
    """A few thresholds around today's, within (0, 1)."""
    return sorted({round(min(max(current + s, 0.05), 0.99), 2) for s in steps})
