"""Fixtures for the chat page: the real app on a free port, signed-in HTTP clients, one headless Chromium."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

import tests.support.ui.page_model  # noqa: F401 - registers the "ui-scripted" backend
from tests.support.app_server import RunningApp, run_app
from webapp.guard.turn import TurnGuard
from webapp.settings import Settings
from webapp.store.migrate import upgrade


@pytest.fixture(scope="module")
def running_app_factory() -> Iterator[Callable[[Settings], RunningApp]]:
    """Start the app for a module (on a migrated database); it stops with the module."""
    with ExitStack() as stack:

        def start(settings: Settings) -> RunningApp:
            upgrade(settings.resolved_database_url)
            TurnGuard.clear_cache()
            return stack.enter_context(run_app(settings))

        yield start
    TurnGuard.clear_cache()
