"""P4: opening a 1,000-message conversation, and one page of a 100,000-flag moderation queue, on SQLite
and PostgreSQL.

- `db_open_conversation_ms`: the read the chat page makes to open a conversation (webapp/ui/chat.py
  ``ChatPage._open_sync``): ``read_transcript``, the conversation and its messages with the user's votes.
- `db_queue_page_ms`: the reads the moderation page makes for one queue page (webapp/ui/moderation.py
  ``ModerationPage._queue``): ``list_queue`` (50 flags, filtered by status and rail, newest first) and
  ``count_queue``. Other common views are timed too and listed.

The baseline is the same rows fetched with one hand-written SQL statement through the raw driver (sqlite3,
psycopg), so the ratio shows what the ORM and the query shapes cost. PostgreSQL runs in a throwaway database
on 127.0.0.1:5432 (user postgres), dropped afterwards.

    python -m bench.db --quick
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select, text

from bench.report import Figure, Report
from bench.stats import Dist
from webapp.moderation.queue import QueueFilter, count_queue, list_queue
from webapp.store import conversations as conv
from webapp.store import users
from webapp.store.engine import Database
from webapp.store.migrate import upgrade
from webapp.store.models import Conversation, Feedback, Flag, Message, User
from webapp.store.transcripts import read_transcript

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
RAILS = ("check abuse input", "check jailbreak", "self check input", "check abuse output", "self check output")
QUEUE_PAGE = 50
FILTERED_RAIL = "check jailbreak"
START = datetime(2026, 1, 1, tzinfo=UTC)
VERDICT = {
    "allowed": True,
    "stage": None,
    "rail": None,
    "reason": None,
    "score": None,
    "duration_ms": 12.5,
    "checks": [
        {"name": name, "stage": "output", "duration_ms": 1.2, "blocked": False, "reason": None, "score": 0.01}
        for name in ("check abuse output", "neutralise markup")
    ],
    "model_calls": [],
}


@dataclass(frozen=True)
class Seeded:
    owner: User
    moderator: User
    conversation_id: int


def _batches(rows: list[dict[str, Any]], size: int = 5000) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def seed(db: Database, *, messages: int, flags: int, conversations: int, flag_users: int) -> Seeded:
    """One owner with a ``messages``-long conversation; ``flags`` flags over other users' conversations."""
    with db.write() as session:
        owner = users.create_user(session, username="owner", password="bench-password-1")
        moderator = users.create_user(session, username="moderator", password="bench-password-1", role="moderator")
        chat = conv.create_conversation(session, user=owner, title="long chat", system_prompt="", sampling={})
        session.execute(
            insert(Message),
            [
                {
                    "conversation_id": chat.id,
                    "seq": seq,
                    "role": "user" if seq % 2 else "assistant",
                    "content": f"message {seq}: " + "lorem ipsum dolor sit amet " * 8,
                    "status": "complete",
                    "verdict": None if seq % 2 else VERDICT,
                    "created_at": START + timedelta(seconds=seq),
                }
                for seq in range(1, messages + 1)
            ],
        )
        replies = session.scalars(
            select(Message.id).where(Message.conversation_id == chat.id, Message.role == "assistant")
        ).all()
        session.execute(
            insert(Feedback), [{"message_id": mid, "user_id": owner.id, "value": 1} for mid in replies[::10]]
        )
        session.execute(
            insert(User),
            [
                {"username": f"flagged{i}", "password_hash": owner.password_hash, "role": "user", "created_at": START}
                for i in range(flag_users)
            ],
        )
        people = session.scalars(select(User.id).where(User.username.like("flagged%")).order_by(User.id)).all()
        for batch in _batches(
            [
                {"owner_id": people[i % len(people)], "title": f"c{i}", "created_at": START, "updated_at": START}
                for i in range(conversations)
            ]
        ):
            session.execute(insert(Conversation), batch)
        chats = session.execute(
            select(Conversation.id, Conversation.owner_id).where(Conversation.id != chat.id).order_by(Conversation.id)
        ).all()
    sources = ("input_rail", "rail_error", "output_rail", "input_rail", "user_report")
    statuses = ("open", "open", "open", "dismissed", "confirmed", "escalated")
    rows = []
    for i in range(flags):
        chat_id, chat_owner = chats[(i * 7919) % len(chats)]
        rows.append(
            {
                "conversation_id": chat_id,
                "user_id": chat_owner,
                "source": sources[i % 5],
                "rail": None if i % 5 == 4 else RAILS[i % 7 % 5],
                "reason": "seeded",
                "excerpt": f"seeded excerpt {i} " + ("tea", "coffee", "bomb", "hi")[i % 4],
                "status": statuses[i % 6],
                "created_at": START + timedelta(minutes=i),
                "version": 1,
            }
        )
    for batch in _batches(rows):
        with db.write() as session:  # one transaction per batch keeps PostgreSQL's trigger work bounded
            session.execute(insert(Flag), batch)
    return Seeded(owner=owner, moderator=moderator, conversation_id=chat.id)


# --- what GuardChat does ---------------------------------------------------------------------------------


def open_conversation(db: Database, seeded: Seeded) -> int:
    """The chat page's read when a conversation is opened."""
    with db.read() as session:
        transcript = read_transcript(session, user=seeded.owner, conversation_id=seeded.conversation_id)
        return len(transcript.messages)


QUEUE_VIEWS: dict[str, tuple[QueueFilter, str]] = {
    "open, one rail, newest first": (QueueFilter(status="open", rail=FILTERED_RAIL), "newest"),
    "open, newest first": (QueueFilter(status="open"), "newest"),
    "open, user reports, oldest first": (QueueFilter(status="open", source="user_report"), "oldest"),
    "open, most flagged conversation first": (QueueFilter(status="open"), "most_flagged"),
    "every status, one user, newest first": (QueueFilter(status=None, username="flagged7"), "newest"),
    'open, text "bomb", newest first': (QueueFilter(status="open", text="bomb"), "newest"),
}
FIGURE_VIEW = "open, one rail, newest first"


def queue_page(db: Database, seeded: Seeded, filters: QueueFilter, sort: str) -> int:
    """The moderation page's reads for one queue page: the page and the matching count."""
    with db.read() as session:
        page = list_queue(session, actor=seeded.moderator, filters=filters, sort=sort, limit=QUEUE_PAGE)
        count_queue(session, actor=seeded.moderator, filters=filters)
        return len(page.items)


# --- the raw baseline -------------------------------------------------------------------------------------

# The same columns the chat page reads; ``->`` takes the verdict's checks on SQLite (3.38+) and PostgreSQL alike.
RAW_OPEN = (
    "SELECT m.id, m.role, m.content, m.status, m.verdict -> 'checks', f.value FROM messages m "
    "LEFT JOIN feedback f ON f.message_id = m.id AND f.user_id = {p} "
    "WHERE m.conversation_id = {p} AND m.seq > 0 ORDER BY m.seq"
)
RAW_QUEUE = (
    "SELECT f.id, f.version, f.created_at, f.status, f.source, f.rail, f.reason, f.excerpt, f.user_id, u.username, "
    "f.conversation_id, f.message_id, c.flag_count, a.username FROM flags f "
    "JOIN conversations c ON c.id = f.conversation_id JOIN users u ON u.id = f.user_id "
    "LEFT JOIN users a ON a.id = f.assignee_id WHERE f.status = 'open' AND f.rail = {p} "
    "ORDER BY f.created_at DESC, f.id DESC LIMIT {limit}"
)
RAW_COUNT = "SELECT count(*) FROM flags WHERE status = 'open' AND rail = {p}"


@contextlib.contextmanager
def raw_connection(url: str) -> Iterator[tuple[Any, str]]:
    """The driver's own connection and its parameter marker."""
    if url.startswith("sqlite"):
        connection: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
        marker = "?"
    else:
        import psycopg

        connection = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        marker = "%s"
    try:
        yield connection, marker
    finally:
        connection.close()


def raw_open(connection: Any, marker: str, seeded: Seeded) -> int:
    cursor = connection.cursor()
    cursor.execute(RAW_OPEN.format(p=marker), (seeded.owner.id, seeded.conversation_id))
    return len(cursor.fetchall())


def raw_queue(connection: Any, marker: str) -> int:
    cursor = connection.cursor()
    cursor.execute(RAW_QUEUE.format(p=marker, limit=QUEUE_PAGE + 1), (FILTERED_RAIL,))
    rows = cursor.fetchall()
    cursor.execute(RAW_COUNT.format(p=marker), (FILTERED_RAIL,))
    cursor.fetchall()
    return len(rows)


# --- measuring --------------------------------------------------------------------------------------------


def round_robin(calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, Dist]:
    """Each call ``repeats`` times, taking turns, so load drift on a shared machine hits every one alike."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - started) * 1000)
    return {name: Dist.of(values) for name, values in samples.items()}


@dataclass(frozen=True)
class DbResult:
    backend: str
    seed_s: float
    open_ms: Dist
    raw_open_ms: Dist
    queue_ms: dict[str, Dist]
    raw_queue_ms: Dist


def measure(url: str, backend: str, *, messages: int, flags: int, repeats: int) -> DbResult:
    upgrade(url)
    db = Database(url)
    try:
        started = time.perf_counter()
        seeded = seed(db, messages=messages, flags=flags, conversations=max(flags // 5, 10), flag_users=500)
        if backend == "PostgreSQL":
            with db.write() as session:
                session.execute(text("ANALYZE"))
        seed_s = time.perf_counter() - started
        with raw_connection(url) as (connection, marker):
            if open_conversation(db, seeded) != raw_open(connection, marker, seeded):
                raise RuntimeError("the raw baseline and GuardChat read different messages")
            calls: dict[str, Callable[[], object]] = {
                "open": lambda: open_conversation(db, seeded),
                "raw open": lambda: raw_open(connection, marker, seeded),
                "raw queue": lambda: raw_queue(connection, marker),
            }
            for name, (filters, sort) in QUEUE_VIEWS.items():
                calls[name] = lambda f=filters, s=sort: queue_page(db, seeded, f, s)  # type: ignore[misc]
            times = round_robin(calls, repeats)
        queue_ms = {name: times[name] for name in QUEUE_VIEWS}
        return DbResult(backend, seed_s, times["open"], times["raw open"], queue_ms, times["raw queue"])
    finally:
        db.dispose()


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    name = f"gc_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with contextlib.suppress(Exception), admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def report(results: list[DbResult], *, messages: int, flags: int, skipped: str = "") -> Report:
    figures: list[Figure] = []
    lines = [
        f"{messages:,} messages in the opened conversation (every tenth reply has feedback); {flags:,} flags over "
        f"{max(flags // 5, 10):,} conversations of 500 users, half of them open.",
        "",
        "| backend | view | p50 ms | p95 ms |",
        "|---|---|---|---|",
    ]
    for result in results:
        sqlite = result.backend == "SQLite"
        queue = result.queue_ms[FIGURE_VIEW]
        figures += [
            Figure(
                f"P4 db_open_conversation_ms ({result.backend})",
                result.open_ms.p50,
                "ms",
                "<= 20" if sqlite else "",
                f"p50 {result.open_ms.p50:.1f} ms, p95 {result.open_ms.p95:.1f} ms",
                f"raw SQL p50 {result.raw_open_ms.p50:.1f} ms",
                f"ratio {result.open_ms.p50 / result.raw_open_ms.p50:.1f}x the raw driver",
            ),
            Figure(
                f"P4 db_queue_page_ms ({result.backend})",
                queue.p50,
                "ms",
                "<= 50" if sqlite else "",
                f"p50 {queue.p50:.1f} ms, p95 {queue.p95:.1f} ms",
                f"raw SQL p50 {result.raw_queue_ms.p50:.1f} ms",
                f"{FIGURE_VIEW}; slowest view: "
                + max(((n, d.p50) for n, d in result.queue_ms.items()), key=lambda item: item[1])[0],
            ),
        ]
        lines.append(f"| {result.backend} | open conversation | {result.open_ms.p50:.1f} | {result.open_ms.p95:.1f} |")
        lines.append(
            f"| {result.backend} | open conversation, raw SQL | {result.raw_open_ms.p50:.1f} "
            f"| {result.raw_open_ms.p95:.1f} |"
        )
        for name, dist in result.queue_ms.items():
            lines.append(f"| {result.backend} | queue page: {name} | {dist.p50:.1f} | {dist.p95:.1f} |")
        lines.append(
            f"| {result.backend} | queue page: {FIGURE_VIEW}, raw SQL | {result.raw_queue_ms.p50:.1f} "
            f"| {result.raw_queue_ms.p95:.1f} |"
        )
    if skipped:
        lines += ["", skipped]
    return Report("P4 database reads", figures, "\n".join(lines))


def run(workdir: Path, *, quick: bool) -> Report:
    messages, flags, repeats = (40, 500, 3) if quick else (1_000, 100_000, 30)
    results = [measure(f"sqlite:///{workdir / 'p4.db'}", "SQLite", messages=messages, flags=flags, repeats=repeats)]
    skipped = ""
    try:
        with throwaway_postgres() as url:
            results.append(measure(url, "PostgreSQL", messages=messages, flags=flags, repeats=repeats))
    except Exception as error:
        if "connect" not in str(error).lower():
            raise
        skipped = f"PostgreSQL skipped: not reachable at 127.0.0.1:5432 ({type(error).__name__})."
    return report(results, messages=messages, flags=flags, skipped=skipped)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 messages, 500 flags (a smoke run)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="guardchat-bench-") as tmp:
        print(run(Path(tmp), quick=args.quick).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
