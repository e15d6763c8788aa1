"""Put the Gradio pages inside the FastAPI app, each behind the session sign-in and, for staff pages, a role.

Two locks on each staff page: the mount's auth dependency answers 401 to anyone without the role (page,
config, files and every event endpoint), and each handler checks the role again itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Mount

from webapp.context import AppContext
from webapp.services.accounts import User
from webapp.ui.admin import ADMIN_PATH, build_admin_page
from webapp.ui.assets import head, stylesheet
from webapp.ui.chat import ChatPage, build_chat_page
from webapp.ui.moderation import MODERATION_PATH, build_moderation_page
from webapp.ui.session import RolePredicate, anyone, gradio_auth_dependency

CHAT_PATH = "/"
NOT_ALLOWED_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not allowed · GuardChat</title>
<style>body{{font-family:system-ui,sans-serif;display:flex;min-height:90vh;align-items:center;justify-content:center}}
main{{max-width:28rem;text-align:center}}</style></head>
<body><main><h1>{who} only</h1><p>Your account cannot open this page.</p><p><a href="/">Back to the chat</a></p>
</main></body></html>"""


def _is_staff(user: User) -> bool:
    return user.is_moderator


def _is_admin(user: User) -> bool:
    return user.role == "admin"


def _refusal_handler(ctx: AppContext, path: str, who: str) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def refuse(request: Request, exc: Exception) -> Response:
        """A browser opening the page: sign in first, or a plain "not allowed" page. API calls keep the 401."""
        assert isinstance(exc, HTTPException)
        wants_page = request.method == "GET" and (
            request.url.path == path or "text/html" in request.headers.get("accept", "")
        )
        if exc.status_code == 401 and wants_page:
            user = None
            if "session" in request.scope:
                user = await ctx.accounts.session_user(request.session)
            if user is not None:
                return HTMLResponse(NOT_ALLOWED_PAGE.format(who=who), status_code=403)
            return RedirectResponse("/login", status_code=303)
        return await http_exception_handler(request, exc)

    return refuse


def mount_page(
    app: FastAPI,
    ctx: AppContext,
    demo: gr.Blocks,
    *,
    path: str,
    css: str,
    allowed: RolePredicate = anyone,
    who: str = "Signed-in users",
) -> Mount:
    """Queue ``demo`` for concurrent streams and mount it at ``path`` for the users ``allowed`` lets in."""
    demo.queue(default_concurrency_limit=ctx.settings.queue_concurrency, max_size=None)
    gr.mount_gradio_app(
        app,
        demo,
        path=path,
        auth_dependency=gradio_auth_dependency(ctx, allowed),
        footer_links=[],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        pwa=False,
        # System fonts: the default theme would fetch fonts from a third party on every page load.
        theme=gr.themes.Soft(
            primary_hue="indigo",
            neutral_hue="slate",
            font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
            font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
        ),
        css=css,
        head=head(),
    )
    mounted = next(r for r in reversed(app.routes) if isinstance(r, Mount) and r.app is not app)
    mounted.app.add_exception_handler(HTTPException, _refusal_handler(ctx, path, who))  # type: ignore[attr-defined]
    return mounted


async def _with_slash(request: Request) -> Response:
    """/moderation → /moderation/ (the chat's mount at "/" would answer the bare path with a 404)."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"{request.url.path}/{query}", status_code=307)


def mount_pages(app: FastAPI, ctx: AppContext) -> ChatPage:
    """/moderation and /admin, then the chat page at ``/`` (after every other route, so /login, /v1, the
    downloads … keep precedence: a mount at "/" catches every path)."""
    for path in (MODERATION_PATH, ADMIN_PATH):
        app.add_api_route(path, _with_slash, methods=["GET"], include_in_schema=False)
    moderation, admin, staff_css = build_moderation_page(ctx), build_admin_page(ctx), stylesheet("moderation")
    mount_page(app, ctx, moderation, path=MODERATION_PATH, css=staff_css, allowed=_is_staff, who="Moderators")
    mount_page(app, ctx, admin, path=ADMIN_PATH, css=staff_css, allowed=_is_admin, who="Admins")
    page, demo = build_chat_page(ctx)
    # Gradio runs one event at a time per listener by default, and at most `max_threads` (40) events in
    # all: both limits would make chat streams wait for each other.
    demo.max_threads = ctx.settings.queue_concurrency
    mount_page(app, ctx, demo, path=CHAT_PATH, css=stylesheet("chat"))
    app.state.chat_page = page
    return page
