"""Who is acting: read from the signed session cookie on the server, on every Gradio request and event.

Gradio events are HTTP endpoints, so no handler trusts anything the page sends about the user. The
session is re-read from the database each time: a ban takes effect on the next click.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import gradio as gr
from fastapi import Request

from webapp.context import AppContext
from webapp.services.accounts import User

RolePredicate = Callable[[User], bool]
SIGNED_OUT_MESSAGE = "You are signed out (or your account is suspended). Sign in again at /login."


class SignedOutError(gr.Error):
    """The request carries no signed-in, non-banned user."""

    def __init__(self) -> None:
        super().__init__(SIGNED_OUT_MESSAGE, title="Signed out")


def _session_of(request: gr.Request | None) -> dict[str, Any] | None:
    raw = getattr(request, "request", None) if request is not None else None
    scope = getattr(raw, "scope", None)
    if not isinstance(scope, dict):
        return None
    session = scope.get("session")
    return session if isinstance(session, dict) else None


async def acting_user(ctx: AppContext, request: gr.Request | None) -> User:
    """The signed-in user behind a Gradio event, or SignedOutError (a banned user's session is cleared)."""
    session = _session_of(request)
    if session is None:
        raise SignedOutError()
    user = await ctx.accounts.session_user(session)
    if user is None:
        raise SignedOutError()
    return user


def anyone(_user: User) -> bool:
    return True


def gradio_auth_dependency(
    ctx: AppContext, allowed: RolePredicate = anyone
) -> Callable[[Request], Awaitable[str | None]]:
    """For ``mount_gradio_app(auth_dependency=...)``: the username if the role fits, or None so Gradio answers 401."""

    async def username(request: Request) -> str | None:
        if "session" not in request.scope:
            return None
        user = await ctx.accounts.session_user(request.session)
        return user.username if user is not None and allowed(user) else None

    return username
