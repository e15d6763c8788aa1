"""Engines and sessions for SQLite and PostgreSQL.

SQLite: WAL lets readers run beside the single writer; writes open with BEGIN IMMEDIATE so a second
writer waits on busy_timeout instead of failing later with "database is locked" on lock upgrade.
synchronous=NORMAL is durable against an application crash (the WAL is intact); only an OS crash or
power loss may roll back the newest transactions, which is the usual WAL trade for chat latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
P = ParamSpec("P")
T = TypeVar("T")


class DatabaseURLError(ValueError):
    pass


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=8,
        max_overflow=32,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself instead of pysqlite's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def make_engine(url: str, *, writer: bool = True) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseURLError(f"database URL {url!r} is malformed: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, immediate=writer)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=40)
    raise DatabaseURLError(f"database URL {url!r}: only sqlite:/// and postgresql+psycopg:// are supported")


class Database:
    """One writer path and one reader path over the same database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.writer = make_engine(url, writer=True)
        self.is_sqlite = self.writer.dialect.name == "sqlite"
        self.reader = make_engine(url, writer=False) if self.is_sqlite else self.writer
        self._write_sessions = sessionmaker(self.writer, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.reader, expire_on_commit=False)
        # SQLite has one writer at a time. Writers of this process queue on this lock, so the next one starts
        # the moment the last commits; waiting in SQLite's busy handler instead sleeps in steps of up to
        # 100 ms, which under load made a 5 ms transaction wait hundreds of milliseconds. Other processes
        # still meet SQLite's lock and busy_timeout.
        self._write_lock: threading.RLock | contextlib.nullcontext[None] = (
            threading.RLock() if self.is_sqlite else contextlib.nullcontext()
        )

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any error."""
        with self._write_lock, self._write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read_sessions() as session, session.begin():
            yield session

    async def run_read(self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(session, *args, **kwargs)`` in a read transaction, on a worker thread: async code's way in."""

        def run() -> T:
            with self.read() as session:
                return fn(session, *args, **kwargs)

        return await asyncio.to_thread(run)

    async def run_write(self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(session, *args, **kwargs)`` in a write transaction (committed on success), on a worker thread."""

        def run() -> T:
            with self.write() as session:
                return fn(session, *args, **kwargs)

        return await asyncio.to_thread(run)

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()
