"""The real app with the staff pages mounted, under uvicorn on a free port (for HTTP and browser tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import gradio as gr
import httpx
from fastapi import FastAPI

import tests.support.guard.scripted_model  # noqa: F401  (registers the "scripted" chat model backend)
from tests.support.app_server import RunningApp, serve_app
from tests.support.moderation.queue_seed import PASSWORD, SeededQueue
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


@dataclass
class StaffApp:
    app: RunningApp
    seeded: SeededQueue
    # The same pages mounted again behind "any signed-in user": only the handlers' own checks guard them.
    unguarded: dict[str, tuple[str, gr.Blocks]]
    sessions: dict[str, httpx.Cookies] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.app.url

    @contextmanager
    def client(self, username: str | None = None) -> Iterator[httpx.Client]:
        """An HTTP client, signed in as ``username`` through the real sign-in form (or anonymous)."""
        with httpx.Client(base_url=self.app.url, timeout=30) as client:
            if username is not None and username in self.sessions:
                client.cookies = httpx.Cookies(self.sessions[username])
            elif username is not None:
                signed_in = client.post("/login", data={"username": username, "password": PASSWORD})
                assert signed_in.status_code == 303, signed_in.text
                self.sessions[username] = httpx.Cookies(client.cookies)
            yield client
