"""Everything a client can call on GuardChat, enumerated from the app itself: HTTP routes and Gradio events.

``build_app`` builds the production app (chat page, staff pages, API) without serving it and without
loading rails, so the surface is known at test collection; ``surface`` lists it; ``serve_everything``
runs the real one and hands back the ASGI app too, so the surfaces can be compared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import uvicorn
from fastapi import FastAPI
from starlette.routing import Mount

from tests.support.app_server import RunningApp
from tests.support.ports import free_port
from tests.support.settings import make_settings
from webapp.app import create_app
from webapp.chat.service import ChatService
from webapp.context import AppContext
from webapp.llm.params import GenerationParams
from webapp.llm.templates import ChatTurn
from webapp.settings import Settings
from webapp.store.engine import Database


@dataclass(frozen=True)
class Endpoint:
    """One thing a client can call: an HTTP route (``method``, ``path``) or a Gradio event on a page."""

    kind: str  # "http" or "event"
    method: str  # HTTP method, or "EVENT"
    path: str  # route template (with the mount prefix), or the page's mount path ("" for the chat page)
    name: str = ""  # the event's api_name

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}" if self.kind == "http" else f"EVENT {self.path or '/'} {self.name}"


def _routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _routes(route.app.routes, prefix + route.path)  # type: ignore[attr-defined]
        elif hasattr(route, "effective_route_contexts"):  # FastAPI's included routers
            for context in route.effective_route_contexts():
                for method in sorted(getattr(context.original_route, "methods", None) or ["WEBSOCKET"]):
                    yield method, prefix + context.path, context.original_route
        else:
            for method in sorted(getattr(route, "methods", None) or ["WEBSOCKET"]):
                yield method, prefix + route.path, route


def gradio_pages(app: FastAPI) -> dict[str, gr.Blocks]:
    """Mount path ("" for the chat page at "/") → the Blocks served there."""
    return {
        route.path: route.app.get_blocks()  # type: ignore[attr-defined]
        for route in app.routes
        if isinstance(route, Mount) and hasattr(route.app, "get_blocks")
    }


def event_indexes(blocks: gr.Blocks) -> dict[str, int]:
    """api_name → fn_index of every event that runs a Python function."""
    return {fn.api_name: index for index, fn in blocks.fns.items() if fn.fn is not None and fn.api_name}


def surface(app: FastAPI) -> list[Endpoint]:
    http = {Endpoint("http", method, path) for method, path, _ in _routes(app.routes)}
    events = {
        Endpoint("event", "EVENT", mount, name)
        for mount, blocks in gradio_pages(app).items()
        for name in event_indexes(blocks)
    }
    return sorted(http | events, key=lambda e: e.key)


class _NoGuard:
    """Enough of a guard to build the pages; enumeration never runs a turn."""

    def check_input(self, user_text: str, conversation: Any = None) -> Any:
        raise RuntimeError("the surface app does not chat")

    def stream_turn(self, history: Sequence[ChatTurn], params: GenerationParams, **_: Any) -> Any:
        raise RuntimeError("the surface app does not chat")


def build_app(data_dir: Path) -> FastAPI:
    settings = make_settings(data_dir=data_dir)
    db = Database(settings.resolved_database_url)  # never connected: nothing here runs a query
    chat = ChatService(database=db, guard=_NoGuard(), settings=settings)

    async def never_ready() -> bool:
        return False

    return create_app(settings, AppContext(settings=settings, db=db, chat=chat, model_ready=never_ready))


@contextmanager
def serve_everything(settings: Settings) -> Iterator[tuple[RunningApp, FastAPI]]:
    """The full app (real rails, every page) under uvicorn on a free port, in a thread of this process."""
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not _healthy(url):
        if time.monotonic() > deadline:
            raise RuntimeError("the app did not start within 60 s")
        time.sleep(0.05)
    try:
        yield RunningApp(url=url, ctx=app.state.ctx, settings=settings), app
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
