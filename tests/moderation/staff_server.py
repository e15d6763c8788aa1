"""The real app with the staff pages mounted, under uvicorn on a free port (for HTTP and browser tests).

Until ``webapp.ui.mount.mount_pages`` mounts the staff pages itself, this builds the app without UI
and mounts them in the production order: staff pages first, then the chat page at "/".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.routing import Mount

import tests.guard.scripted_model  # noqa: F401  (registers the "scripted" chat model backend)
from tests.app_server import RunningApp, free_port
from webapp.api.app import create_app
from webapp.api.context import AppContext
from webapp.settings import Settings
from webapp.ui.moderation import MODERATION_PATH


@contextmanager
def run_staff_app(
    settings: Settings, *, extra: Callable[[FastAPI, AppContext], None] | None = None
) -> Iterator[RunningApp]:
    """``extra`` may add test-only routes; they go first, ahead of the chat page's catch-all mount."""
    app = create_app(settings, with_ui=True)
    if not any(isinstance(r, Mount) and r.path == MODERATION_PATH for r in app.routes):
        from webapp.ui.moderation_mount import mount_staff_pages
        from webapp.ui.mount import mount_pages

        app = create_app(settings, ctx=app.state.ctx, with_ui=False)
        mount_staff_pages(app, app.state.ctx)
        mount_pages(app, app.state.ctx)
    if extra is not None:
        before = len(app.router.routes)
        extra(app, app.state.ctx)
        added = app.router.routes[before:]
        del app.router.routes[before:]
        app.router.routes[:0] = added
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        raise RuntimeError("the app did not start within 30 s")
    try:
        yield RunningApp(url=url, ctx=app.state.ctx, settings=settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
