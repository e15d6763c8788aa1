from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from webapp.store import users
from webapp.store.accounts import ban_user
from webapp.store.engine import Database, make_engine
from webapp.store.migrate import alembic_config, current_revision, head_revision, upgrade
from webapp.store.models import Base, ModerationEvent
from webapp.store.permissions import Operator

EXPECTED_TABLES = {"users", "api_keys", "conversations", "messages", "flags", "moderation_events", "feedback"}


def test_upgrade_from_empty_creates_schema_and_is_idempotent(db_url: str) -> None:
    assert current_revision(db_url) is None
    upgrade(db_url)
    upgrade(db_url)  # a second run is a no-op
    assert current_revision(db_url) == head_revision()
    engine = make_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert EXPECTED_TABLES <= tables


def test_models_and_migrations_agree(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_indexes_for_hot_queries_exist(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        inspector = inspect(engine)
        conv = {tuple(ix["column_names"]) for ix in inspector.get_indexes("conversations")}
        flags = {tuple(ix["column_names"]) for ix in inspector.get_indexes("flags")}
        msg_unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("messages")}
    finally:
        engine.dispose()
    assert ("owner_id", "deleted_at", "updated_at") in conv
    assert ("status", "created_at", "id") in flags
    assert ("rail", "created_at") in flags
    assert ("user_id", "created_at") in flags
    assert ("conversation_id", "seq") in msg_unique


def _actor_nullable(url: str) -> bool:
    engine = make_engine(url, writer=False)
    try:
        columns = {c["name"]: c for c in inspect(engine).get_columns("moderation_events")}
    finally:
        engine.dispose()
    return bool(columns["actor_id"]["nullable"])


def _staff_event_on_0004(url: str) -> int:
    """A moderator's audit row written while the database is at 0004 (actor_id NOT NULL)."""
    db = Database(url)
    try:
        with db.write() as s:
            mod = users.create_user(s, username="mod", password="password123", role="moderator")
            event = ModerationEvent(actor_id=mod.id, action="ban", target_user_id=mod.id, note="before 0005")
            s.add(event)
            s.flush()
            return event.id
    finally:
        db.dispose()


def test_0005_makes_the_audit_actor_nullable_and_downgrades_back(db_url: str) -> None:
    upgrade(db_url, "0004_session_epoch")
    event_id = _staff_event_on_0004(db_url)
    assert not _actor_nullable(db_url)

    upgrade(db_url)
    assert current_revision(db_url) == "0005_cli_audit_actor"
    assert _actor_nullable(db_url)
    command.downgrade(alembic_config(db_url), "0004_session_epoch")
    assert current_revision(db_url) == "0004_session_epoch"
    assert not _actor_nullable(db_url)
    upgrade(db_url)

    db = Database(db_url)
    try:
        with db.read() as s:
            kept = s.get(ModerationEvent, event_id)
            assert kept is not None and kept.note == "before 0005" and kept.actor_id is not None
    finally:
        db.dispose()
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []  # the round trip left the models' schema
    finally:
        engine.dispose()


def test_0005_downgrade_refuses_to_drop_command_line_audit_rows(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    try:
        with db.write() as s:
            alice = users.create_user(s, username="alice", password="password123")
            ban_user(s, actor=Operator.CLI, user_id=alice.id, note="from the shell")
    finally:
        db.dispose()
    with pytest.raises(RuntimeError, match=r"1 audit row\(s\) written at the command line"):
        command.downgrade(alembic_config(db_url), "0004_session_epoch")
    assert current_revision(db_url) == head_revision()
    assert _actor_nullable(db_url)
    db = Database(db_url)
    try:
        with db.read() as s:
            assert [e.note for e in s.scalars(select(ModerationEvent))] == ["from the shell"]
    finally:
        db.dispose()
