from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from tests.db_fixtures import PG_ADMIN_URL
from tests.moderation.queue_seed import SeededQueue, seed_queue
from webapp.store.engine import Database
from webapp.store.migrate import upgrade


@pytest.fixture
def seeded(database: Database) -> SeededQueue:
    """The known six-flag queue, on SQLite and on PostgreSQL."""
    return seed_queue(database)


@pytest.fixture
def seeded_sqlite(sqlite_database: Database) -> SeededQueue:
    """The same queue on SQLite only, for checks that do not depend on the database."""
    return seed_queue(sqlite_database)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_queue(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Database, SeededQueue]]:
    """The six-flag queue seeded once per test module and database, for tests that only read."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('queue') / 'queue.db'}"
        upgrade(url)
        db = Database(url)
        yield db, seed_queue(db)
        db.dispose()
        return
    name = f"gc_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url)
        db = Database(url)
        yield db, seed_queue(db)
        db.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
