"""Numbers for the stats tab: flags per day by rail, block rate per day, top rails, most-confirmed users."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from webapp.moderation.queue import as_utc
from webapp.store.errors import InvalidInputError
from webapp.store.models import Flag, Message, User
from webapp.store.permissions import require_staff

MAX_DAYS = 366
USER_REPORT_LABEL = "user report"


@dataclass(frozen=True)
class DayCount:
    day: date
    label: str
    count: int


@dataclass(frozen=True)
class DayRate:
    day: date
    turns: int
    blocked: int

    @property
    def rate(self) -> float:
        return self.blocked / self.turns if self.turns else 0.0


@dataclass(frozen=True)
class ModerationStats:
    since: datetime
    until: datetime
    flags_per_day: list[DayCount]
    block_rate: list[DayRate]
    top_rails: list[tuple[str, int]]
    top_users: list[tuple[str, int, int]]  # username, confirmed flags, all flags


def _day(session: Session, column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp, in the database's own SQL."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)  # SQLite stores UTC text: date() reads its first ten characters


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def moderation_stats(
    session: Session, *, actor: User, since: datetime, until: datetime, top: int = 10
) -> ModerationStats:
    require_staff(session, actor)
    since, until = as_utc(since), as_utc(until)
    if since >= until:
        raise InvalidInputError("the stats range ends before it starts")
    if until - since > timedelta(days=MAX_DAYS):
        raise InvalidInputError(f"the stats range is longer than {MAX_DAYS} days")
    in_range = (Flag.created_at >= since, Flag.created_at < until)
    label = func.coalesce(Flag.rail, USER_REPORT_LABEL)

    day = _day(session, Flag.created_at)
    per_day = session.execute(
        select(day, label, func.count()).where(*in_range).group_by(day, label).order_by(day, label)
    ).all()

    message_day = _day(session, Message.created_at)
    turns = session.execute(
        select(message_day, func.count(), func.count().filter(Message.status == "blocked"))
        .where(
            Message.role == "assistant",
            Message.status.in_(("complete", "blocked")),
            Message.created_at >= since,
            Message.created_at < until,
        )
        .group_by(message_day)
        .order_by(message_day)
    ).all()

    rails = session.execute(
        select(label, func.count()).where(*in_range).group_by(label).order_by(func.count().desc(), label).limit(top)
    ).all()

    confirmed = func.count().filter(Flag.status == "confirmed")
    users = session.execute(
        select(User.username, confirmed, func.count())
        .join(User, User.id == Flag.user_id)
        .where(*in_range)
        .group_by(User.username)
        .having(confirmed > 0)
        .order_by(confirmed.desc(), User.username)
        .limit(top)
    ).all()

    return ModerationStats(
        since=since,
        until=until,
        flags_per_day=[DayCount(_as_date(d), str(name), int(n)) for d, name, n in per_day],
        block_rate=[DayRate(_as_date(d), int(total), int(blocked)) for d, total, blocked in turns],
        top_rails=[(str(name), int(n)) for name, n in rails],
        top_users=[(str(name), int(c), int(n)) for name, c, n in users],
    )
