"""The real app with the staff pages mounted, under uvicorn on a free port (for HTTP and browser tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import FastAPI

import tests.support.guard.scripted_model  # noqa: F401  (registers the "scripted" chat model backend)
from tests.support.app_server import RunningApp, serve_app
from webapp.app import create_app
from webapp.context import AppContext
from webapp.settings import Settings


@contextmanager
def run_staff_app(
    settings: Settings, *, extra: Callable[[FastAPI, AppContext], None] | None = None
) -> Iterator[RunningApp]:
    """``extra`` may add test-only routes; they go first, ahead of the chat page's catch-all mount."""
    app = create_app(settings, with_ui=True)
    if extra is not None:
        before = len(app.router.routes)
        extra(app, app.state.ctx)
        added = app.router.routes[before:]
        del app.router.routes[before:]
        app.router.routes[:0] = added
    with serve_app(app, settings) as running:
        yield running
