"""Put the Gradio pages inside the FastAPI app, behind the session sign-in."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

from webapp.context import AppContext
from webapp.ui.chat import ChatPage, build_chat_page
from webapp.ui.export import build_export_router
from webapp.ui.gradio_mount import mount_gradio_page
from webapp.ui.moderation_mount import mount_staff_pages
from webapp.ui.session import gradio_auth_dependency
from webapp.ui.styles import CSS

CHAT_PATH = "/"


async def _sign_in_instead(request: Request, exc: Exception) -> Response:
    """Gradio answers an anonymous visitor with 401; a browser loading the page goes to sign-in instead."""
    assert isinstance(exc, HTTPException)
    wants_page = request.method == "GET" and (
        request.url.path == CHAT_PATH or "text/html" in request.headers.get("accept", "")
    )
    if exc.status_code == 401 and wants_page:
        return RedirectResponse("/login", status_code=303)
    return await http_exception_handler(request, exc)


def mount_pages(app: FastAPI, ctx: AppContext) -> ChatPage:
    """Mount the chat page at ``/`` (after every FastAPI route, so /login, /v1 … keep precedence)."""
    app.include_router(build_export_router(ctx))
    mount_staff_pages(app, ctx)  # /moderation, /admin: before the catch-all chat mount at "/"
    page, demo = build_chat_page(ctx)
    # Gradio runs one event at a time per listener by default, and at most `max_threads` (40) events in
    # all: both limits would make chat streams wait for each other.
    demo.max_threads = ctx.settings.queue_concurrency
    mounted = mount_gradio_page(app, ctx, demo, path=CHAT_PATH, auth_dependency=gradio_auth_dependency(ctx), css=CSS)
    mounted.app.add_exception_handler(HTTPException, _sign_in_instead)  # type: ignore[attr-defined]
    app.state.chat_page = page
    return page
