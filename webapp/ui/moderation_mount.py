"""Mount the staff pages (/moderation for moderators and admins, /admin for admins) in the FastAPI app.

Two locks on each page: the mount's auth dependency answers 401 to anyone without the role (page,
config, files and every event endpoint), and each handler checks the role again itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from webapp.context import AppContext
from webapp.services.accounts import User
from webapp.ui.admin import ADMIN_PATH, build_admin_page
from webapp.ui.gradio_mount import mount_gradio_page
from webapp.ui.moderation import MODERATION_PATH, build_moderation_page
from webapp.ui.moderation.export import build_moderation_export_router
from webapp.ui.moderation_styles import MODERATION_CSS

NOT_ALLOWED_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not allowed · GuardChat</title>
<style>body{{font-family:system-ui,sans-serif;display:flex;min-height:90vh;align-items:center;justify-content:center}}
main{{max-width:28rem;text-align:center}}</style></head>
<body><main><h1>{who} only</h1><p>Your account cannot open this page.</p><p><a href="/">Back to the chat</a></p>
</main></body></html>"""

RolePredicate = Callable[[User], bool]


def _is_staff(user: User) -> bool:
    return user.is_moderator


def _is_admin(user: User) -> bool:
    return user.role == "admin"


def role_dependency(ctx: AppContext, allowed: RolePredicate) -> Callable[[Request], Awaitable[str | None]]:
    """For ``mount_gradio_app(auth_dependency=...)``: the username if the role fits, else None (401)."""

    async def username(request: Request) -> str | None:
        if "session" not in request.scope:
            return None
        user = await ctx.accounts.session_user(request.session)
        return user.username if user is not None and allowed(user) else None

    return username


def _refusal_handler(ctx: AppContext, who: str) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def refuse(request: Request, exc: Exception) -> Response:
        """A browser opening the page: sign in first, or a plain "not allowed" page. API calls keep the 401."""
        assert isinstance(exc, HTTPException)
        wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if exc.status_code == 401 and wants_page:
            user = None
            if "session" in request.scope:
                user = await ctx.accounts.session_user(request.session)
            if user is not None:
                return HTMLResponse(NOT_ALLOWED_PAGE.format(who=who), status_code=403)
            return RedirectResponse("/login", status_code=303)
        return await http_exception_handler(request, exc)

    return refuse


def _mount(app: FastAPI, ctx: AppContext, demo: gr.Blocks, path: str, allowed: RolePredicate, who: str) -> None:
    mounted = mount_gradio_page(
        app, ctx, demo, path=path, auth_dependency=role_dependency(ctx, allowed), css=MODERATION_CSS
    )
    mounted.app.add_exception_handler(HTTPException, _refusal_handler(ctx, who))  # type: ignore[attr-defined]


async def _with_slash(request: Request) -> Response:
    """/moderation → /moderation/ (the chat's mount at "/" would answer the bare path with a 404)."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"{request.url.path}/{query}", status_code=307)


def mount_staff_pages(app: FastAPI, ctx: AppContext) -> None:
    """Call before the chat page is mounted at "/": a mount at "/" would otherwise catch these paths."""
    app.include_router(build_moderation_export_router(ctx, MODERATION_PATH))
    for path in (MODERATION_PATH, ADMIN_PATH):
        app.add_api_route(path, _with_slash, methods=["GET"], include_in_schema=False)
    _mount(app, ctx, build_moderation_page(ctx), MODERATION_PATH, _is_staff, "Moderators")
    _mount(app, ctx, build_admin_page(ctx), ADMIN_PATH, _is_admin, "Admins")
