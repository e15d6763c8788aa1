"""Run the real GuardChat ASGI app under uvicorn on a free port, in a thread of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from tests.support.ports import free_port
from webapp.app import create_app
from webapp.context import AppContext
from webapp.settings import Settings


@dataclass
class RunningApp:
    url: str
    ctx: AppContext
    settings: Settings


@contextmanager
def run_app(settings: Settings, *, with_ui: bool = True) -> Iterator[RunningApp]:
    with serve_app(create_app(settings, with_ui=with_ui), settings) as running:
        yield running


@contextmanager
def serve_app(app: FastAPI, settings: Settings) -> Iterator[RunningApp]:
    """Serve an app already built from ``settings``, once its /healthz answers; stop it on exit."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
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
