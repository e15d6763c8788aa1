"""With 100,000 flags, every queue page is read through indexes: no full scan, no sort of the whole queue.

The plan is read with SQLite's EXPLAIN QUERY PLAN for the exact statement ``list_queue`` executed, with
its bound parameters, on a database without ANALYZE statistics (as a fresh install has).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from tests.support.moderation.bulk_seed import seed_flags
from webapp.moderation.queue import QueueFilter, QueuePage, list_queue
from webapp.store.engine import Database
from webapp.store.migrate import upgrade
from webapp.store.models import Flag, User

FLAGS = 100_000


@pytest.fixture(scope="module")
def big_queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, User]]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('big')) / 'big.db'}"
    upgrade(url)
    db = Database(url)
    seed_flags(db, flags=FLAGS)
    with db.write() as s:
        moderator = User(username="mod", password_hash="x", role="moderator")
        s.add(moderator)
    with db.read() as s:
        assert s.scalar(select(func.count(Flag.id))) == FLAGS
    yield db, moderator
    db.dispose()


def page_and_plan(
    db: Database, moderator: User, filters: QueueFilter, sort: str, after: str | None = None
) -> tuple[QueuePage, list[str]]:
    executed: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        executed.append((statement, parameters))

    event.listen(db.reader, "before_cursor_execute", capture)
    try:
        with db.read() as s:
            page = list_queue(s, actor=moderator, filters=filters, sort=sort, after=after, limit=50)
    finally:
        event.remove(db.reader, "before_cursor_execute", capture)
    statement, parameters = next((q, p) for q, p in reversed(executed) if "FROM" in q and "flags" in q)
    raw = db.reader.raw_connection()
    try:
        plan = [row[3] for row in raw.cursor().execute("EXPLAIN QUERY PLAN " + statement, parameters)]
    finally:
        raw.close()
    return page, plan


def assert_indexed(plan: list[str]) -> None:
    text = "\n".join(plan)
    assert "TEMP B-TREE" not in text, text
    for line in plan:
        if line.startswith("SCAN"):
            assert " USING " in line and "INDEX" in line, f"full table scan: {line}\n{text}"
    assert any(line.split()[1] == "flags" and "INDEX" in line for line in plan), text


FILTERS = {
    "open (default)": QueueFilter(),
    "every status": QueueFilter(status=None),
    "escalated": QueueFilter(status="escalated"),
    "rail": QueueFilter(rail="check jailbreak"),
    "source": QueueFilter(source="user_report"),
    "text": QueueFilter(text="bomb"),
    "dates": QueueFilter(status=None, since=datetime(2026, 2, 1, tzinfo=UTC), until=datetime(2026, 2, 15, tzinfo=UTC)),
}


@pytest.mark.parametrize("sort", ["newest", "oldest", "most_flagged"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_first_and_deep_pages_are_indexed(big_queue: tuple[Database, User], sort: str, name: str) -> None:
    db, moderator = big_queue
    first, plan = page_and_plan(db, moderator, FILTERS[name], sort)
    assert len(first.items) == 50 and first.next_cursor is not None
    assert_indexed(plan)
    second, plan = page_and_plan(db, moderator, FILTERS[name], sort, after=first.next_cursor)
    assert_indexed(plan)
    assert len(second.items) == 50
    assert not {i.id for i in first.items} & {i.id for i in second.items}


def test_one_users_flags_start_from_the_user_index(big_queue: tuple[Database, User]) -> None:
    """For one user the planner starts from their flags; sorting that handful is cheap, whatever the sort."""
    db, moderator = big_queue
    for sort in ("newest", "oldest", "most_flagged"):
        page, plan = page_and_plan(db, moderator, QueueFilter(username="bulk7"), sort)
        assert page.items and {i.username for i in page.items} == {"bulk7"}
        assert any("flags USING INDEX ix_flags_user_created (user_id=?)" in line for line in plan), plan
        assert not any(line.startswith("SCAN flags") for line in plan), plan
