"""Stats on the known queue, on SQLite and PostgreSQL: days are UTC calendar days."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.support.moderation.queue_seed import DAY0, SeededQueue
from webapp.moderation.stats import moderation_stats
from webapp.store.engine import Database
from webapp.store.errors import InvalidInputError


def test_flags_per_day_block_rate_top_rails_and_users(shared_queue: tuple[Database, SeededQueue]) -> None:
    database, seeded = shared_queue
    with database.read() as s:
        stats = moderation_stats(
            s, actor=seeded.moderator, since=DAY0 - timedelta(days=1), until=DAY0 + timedelta(days=7)
        )
    day = DAY0.date()
    assert [(d.day, d.label, d.count) for d in stats.flags_per_day] == [
        (day, "check abuse input", 1),
        (day + timedelta(days=1), "check abuse output", 1),
        (day + timedelta(days=1), "check jailbreak", 1),  # 1.5 days after 09:00 is 21:00 the next day
        (day + timedelta(days=2), "user report", 1),
        (day + timedelta(days=3), "self check input", 1),
        (day + timedelta(days=4), "self check input", 1),
    ]
    assert stats.top_rails[0] == ("self check input", 2)
    assert sorted(stats.top_rails[1:]) == [
        ("check abuse input", 1),
        ("check abuse output", 1),
        ("check jailbreak", 1),
        ("user report", 1),
    ]
    assert stats.top_users == [("bob", 1, 3)]  # only bob has a confirmed flag
    # Replies: five blocked turns and the reported (allowed) reply, which was written on day 2.
    by_day = {r.day: (r.blocked, r.turns) for r in stats.block_rate}
    assert by_day == {
        day: (1, 1),
        day + timedelta(days=1): (2, 2),
        day + timedelta(days=2): (0, 1),
        day + timedelta(days=3): (1, 1),
        day + timedelta(days=4): (1, 1),
    }
    assert isinstance(stats.flags_per_day[0].day, date)


def test_bad_ranges_are_named(shared_queue: tuple[Database, SeededQueue]) -> None:
    database, seeded = shared_queue
    with database.read() as s:
        with pytest.raises(InvalidInputError, match="ends before it starts"):
            moderation_stats(s, actor=seeded.moderator, since=DAY0, until=DAY0)
        with pytest.raises(InvalidInputError, match="longer than 366 days"):
            moderation_stats(s, actor=seeded.moderator, since=DAY0, until=DAY0 + timedelta(days=400))
