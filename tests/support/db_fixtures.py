"""Real databases for tests: SQLite files in tmp_path and throwaway PostgreSQL databases on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from webapp.store.engine import Database
from webapp.store.migrate import upgrade

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _pg_admin():  # type: ignore[no-untyped-def]
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """An empty PostgreSQL database of its own, dropped afterwards."""
    name = f"gc_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A migrated database, SQLite and PostgreSQL."""
    upgrade(db_url)
    db = Database(db_url)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_database(sqlite_url: str) -> Iterator[Database]:
    upgrade(sqlite_url)
    db = Database(sqlite_url)
    yield db
    db.dispose()
