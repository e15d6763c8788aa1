from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import gradio as gr
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, text

from tests.support.db_fixtures import PG_ADMIN_URL
from tests.support.guard.scripted_model import SCRIPT
from tests.support.moderation.queue_seed import SeededQueue, seed_queue
from tests.support.moderation.staff_server import StaffApp, run_staff_app
from tests.support.paths import PROJECT_ROOT
from tests.support.settings import SettingsFactory
from webapp.context import AppContext
from webapp.guard.turn import TurnGuard
from webapp.settings import Settings
from webapp.store.engine import Database
from webapp.store.migrate import upgrade
from webapp.ui.admin import build_admin_page
from webapp.ui.moderation import build_moderation_page
from webapp.ui.session import gradio_auth_dependency


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


@pytest.fixture(scope="session")
def staff_app(tmp_path_factory: pytest.TempPathFactory, settings_factory: SettingsFactory) -> Iterator[StaffApp]:
    """One real app for the HTTP and browser tests: scripted model backend, SQLite, the known queue."""
    settings = settings_factory(
        data_dir=tmp_path_factory.mktemp("staff-app"),
        llm_backend="scripted",
        self_check_rails=False,
        rails_dir=PROJECT_ROOT / "rails",
    )
    upgrade(settings.resolved_database_url)
    unguarded: dict[str, tuple[str, gr.Blocks]] = {}

    def mount_unguarded(app: FastAPI, ctx: AppContext) -> None:
        for name, build, path in (
            ("moderation", build_moderation_page, "/unguarded-moderation"),
            ("admin", build_admin_page, "/unguarded-admin"),
        ):
            demo = build(ctx)
            demo.queue()
            gr.mount_gradio_app(app, demo, path=path, auth_dependency=gradio_auth_dependency(ctx), ssr_mode=False)
            unguarded[name] = (path, demo)

    with run_staff_app(settings, extra=mount_unguarded) as app:
        # Recent days, so the stats tab's default range shows them.
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)
        yield StaffApp(app, seed_queue(app.ctx.db, start=start), unguarded)


@pytest.fixture
def scripted_chat_settings(monkeypatch: pytest.MonkeyPatch, settings_factory: SettingsFactory) -> Iterator[Settings]:
    monkeypatch.setenv("GUARDCHAT_LLM_BACKEND", "scripted")
    monkeypatch.setenv("GUARDCHAT_SELF_CHECK_RAILS", "false")
    SCRIPT.reset()
    TurnGuard.clear_cache()
    yield settings_factory()
    TurnGuard.clear_cache()
    SCRIPT.reset()
