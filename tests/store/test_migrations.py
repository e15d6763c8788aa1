from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from webapp.store.engine import make_engine
from webapp.store.migrate import current_revision, head_revision, upgrade
from webapp.store.models import Base

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
