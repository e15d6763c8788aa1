"""Alembic environment: the URL comes from GuardChat's settings (or a connection handed in by code)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from webapp.settings import get_settings
from webapp.store.engine import make_engine
from webapp.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("url") or get_settings().resolved_database_url
    engine = make_engine(url, writer=False)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("GuardChat migrations run online only: use `guardchat db upgrade`.")
run_migrations_online()
