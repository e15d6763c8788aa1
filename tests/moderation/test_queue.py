"""The queue's filters, sorts and keyset pages on the known six-flag queue, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.moderation.queue_seed import DAY0, SeededQueue
from webapp.moderation.queue import QueueFilter, count_queue, known_rails, list_queue
from webapp.store import flags
from webapp.store.engine import Database
from webapp.store.errors import InvalidInputError


def names(seeded: SeededQueue, database: Database, filters: QueueFilter, sort: str = "newest") -> list[str]:
    by_id = {v: k for k, v in seeded.flags.items()}
    with database.read() as s:
        page = list_queue(s, actor=seeded.moderator, filters=filters, sort=sort, limit=50)
        count = count_queue(s, actor=seeded.moderator, filters=filters)
    assert count == len(page.items)
    return [by_id[item.id] for item in page.items]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (QueueFilter(), ["a3", "b1", "a2", "a1"]),  # open flags by default, newest first
        (QueueFilter(status=None), ["b3", "b2", "a3", "b1", "a2", "a1"]),
        (QueueFilter(status="confirmed"), ["b3"]),
        (QueueFilter(status="dismissed"), ["b2"]),
        (QueueFilter(source="input_rail"), ["b1", "a1"]),
        (QueueFilter(status=None, source="rail_error"), ["b2"]),
        (QueueFilter(source="user_report"), ["a3"]),
        (QueueFilter(rail="check jailbreak"), ["b1"]),
        (QueueFilter(status=None, rail="self check input"), ["b3", "b2"]),
        (QueueFilter(username="alice"), ["a3", "a2", "a1"]),
        (QueueFilter(username="ALICE"), ["a3", "a2", "a1"]),  # usernames are case-insensitive
        (QueueFilter(username="nobody"), []),
        (QueueFilter(since=DAY0 + timedelta(days=1), until=DAY0 + timedelta(days=2)), ["b1", "a2"]),
        (QueueFilter(status=None, since=DAY0 + timedelta(days=3)), ["b3", "b2"]),
        (QueueFilter(text="IDIOT"), ["a1"]),  # excerpts, case-insensitive
        (QueueFilter(text="tea"), ["a3"]),  # report reasons and excerpts
        (QueueFilter(text="100%"), []),  # LIKE wildcards in the search are literal
        (QueueFilter(status=None, username="bob", text="bomb"), ["b3"]),
    ],
    ids=lambda v: repr(v) if isinstance(v, list) else "",
)
def test_filters(shared_queue: tuple[Database, SeededQueue], filters: QueueFilter, expected: list[str]) -> None:
    database, seeded = shared_queue
    assert names(seeded, database, filters) == expected


def test_sorts(shared_queue: tuple[Database, SeededQueue]) -> None:
    database, seeded = shared_queue
    everything = QueueFilter(status=None)
    assert names(seeded, database, everything, "newest") == ["b3", "b2", "a3", "b1", "a2", "a1"]
    assert names(seeded, database, everything, "oldest") == ["a1", "a2", "b1", "a3", "b2", "b3"]
    # Conversation A holds three flags, B2 two, B one; within a conversation, newest first.
    assert names(seeded, database, everything, "most_flagged") == ["a3", "a2", "a1", "b3", "b2", "b1"]
    assert names(seeded, database, QueueFilter(), "most_flagged") == ["a3", "a2", "a1", "b1"]
    assert names(seeded, database, QueueFilter(status=None, username="bob"), "most_flagged") == ["b3", "b2", "b1"]


@pytest.mark.parametrize("sort", ["newest", "oldest", "most_flagged"])
def test_keyset_pages_walk_every_flag_once(shared_queue: tuple[Database, SeededQueue], sort: str) -> None:
    database, seeded = shared_queue
    everything = QueueFilter(status=None)
    with database.read() as s:
        whole = [i.id for i in list_queue(s, actor=seeded.moderator, filters=everything, sort=sort).items]
        walked: list[int] = []
        after = None
        for _ in range(10):
            page = list_queue(s, actor=seeded.moderator, filters=everything, sort=sort, after=after, limit=2)
            walked += [i.id for i in page.items]
            after = page.next_cursor
            if after is None:
                break
    assert walked == whole and len(whole) == 6


def test_a_resolved_flag_leaves_the_open_queue(database: Database, seeded: SeededQueue) -> None:
    with database.write() as s:
        flags.act_on_flag(s, actor=seeded.moderator, flag_id=seeded.flags["a2"], action="dismiss")
    assert names(seeded, database, QueueFilter()) == ["a3", "b1", "a1"]
    assert names(seeded, database, QueueFilter(status="dismissed")) == ["b2", "a2"]


def test_assignment_filter(database: Database, seeded: SeededQueue) -> None:
    with database.write() as s:
        flags.act_on_flag(s, actor=seeded.moderator, flag_id=seeded.flags["b1"], action="assign")
    assert names(seeded, database, QueueFilter(assignment="me")) == ["b1"]
    assert names(seeded, database, QueueFilter(assignment="unassigned")) == ["a3", "a2", "a1"]
    with database.read() as s:
        item = next(i for i in list_queue(s, actor=seeded.moderator).items if i.id == seeded.flags["b1"])
    assert item.assignee == "mod"


def test_rails_for_the_filter_choices(shared_queue: tuple[Database, SeededQueue]) -> None:
    database, seeded = shared_queue
    with database.read() as s:
        assert known_rails(s, actor=seeded.moderator) == [
            "check abuse input",
            "check abuse output",
            "check jailbreak",
            "self check input",
        ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "pending"}, "unknown status 'pending'"),
        ({"source": "email"}, "unknown source 'email'"),
        ({"text": "x" * 201}, "search text is 201 characters; the limit is 200"),
        ({"since": DAY0, "until": DAY0}, "date range ends before it starts"),
    ],
)
def test_bad_filters_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        QueueFilter(**kwargs)  # type: ignore[arg-type]


def test_bad_sort_and_cursor_are_named(sqlite_database: Database, seeded_sqlite: SeededQueue) -> None:
    with sqlite_database.read() as s:
        with pytest.raises(InvalidInputError, match="unknown sort 'random'"):
            list_queue(s, actor=seeded_sqlite.moderator, sort="random")
        with pytest.raises(InvalidInputError, match="page cursor is malformed"):
            list_queue(s, actor=seeded_sqlite.moderator, after="not-a-cursor")
        newest = list_queue(s, actor=seeded_sqlite.moderator, limit=1).next_cursor
        with pytest.raises(InvalidInputError, match="page cursor is malformed"):
            list_queue(s, actor=seeded_sqlite.moderator, sort="most_flagged", after=newest)
