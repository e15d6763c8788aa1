"""Sessions: sign-in, sign-out, sign-up, and who is acting on every request.

The session cookie (signed, HttpOnly, SameSite=Lax) only holds a user id and the user's session epoch at
sign-in; every request re-reads the user, so a ban or a role change takes effect on the next click in every
app process, and signing out (or a new password, or a ban) raises the epoch, which ends every session the
user had, including copies of the cookie.
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import IntegrityError

from webapp.api.context import AppContext
from webapp.settings import Settings
from webapp.store import users
from webapp.store.engine import Database
from webapp.store.errors import DuplicateError, StoreError
from webapp.store.models import User

log = logging.getLogger("guardchat.auth")
SESSION_USER_KEY = "uid"
SESSION_EPOCH_KEY = "epoch"
INITIAL_ADMIN_FILE = "initial-admin-password.txt"


class NotSignedInError(PermissionError):
    pass


def load_session_user(db: Database, session: dict[str, Any]) -> User | None:
    """The signed-in, not banned user of a session, or None."""
    user_id = session.get(SESSION_USER_KEY)
    if not isinstance(user_id, int):
        return None
    with db.read() as s:
        user = users.get_user(s, user_id=user_id)
    if user is None or user.is_banned or session.get(SESSION_EPOCH_KEY, 0) != user.session_epoch:
        session.clear()
        return None
    return user


def sign_in(session: dict[str, Any], user: User) -> None:
    """Start a fresh session for ``user`` (never reuse the previous one's contents)."""
    session.clear()
    session[SESSION_USER_KEY] = user.id
    session[SESSION_EPOCH_KEY] = user.session_epoch


def sign_out(db: Database, session: dict[str, Any]) -> None:
    """Sign out: this session and every other session of its user, on every device. A session that had
    already ended (an old copy of a cookie) ends nothing else."""
    user_id, epoch = session.get(SESSION_USER_KEY), session.get(SESSION_EPOCH_KEY, 0)
    session.clear()
    if not isinstance(user_id, int):
        return
    with db.write() as s:
        user = users.get_user(s, user_id=user_id)
        if user is not None and user.session_epoch == epoch:
            users.end_sessions(s, user=user)


async def request_user(ctx: AppContext, request: Request) -> User | None:
    return await asyncio.to_thread(load_session_user, ctx.db, request.session)


def ensure_initial_admin(db: Database, settings: Settings) -> str | None:
    """On the very first start, create `admin` with a random password; print it once and save it."""
    password = secrets.token_urlsafe(18)
    try:
        with db.write() as s:
            if users.count_users(s) > 0:
                return None
            users.create_user(s, username="admin", password=password, role="admin")
    except (DuplicateError, IntegrityError):
        # Another process sharing a fresh PostgreSQL database created the first account at the same moment.
        return None
    path = Path(settings.data_dir) / INITIAL_ADMIN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"username: admin\npassword: {password}\n", encoding="utf-8")
    path.chmod(0o600)
    print(f"\n  GuardChat created the first account: admin / {password}\n  (also saved in {path})\n", flush=True)
    return password


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · GuardChat</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f4f5f7;margin:0;
display:flex;min-height:100vh;align-items:center;justify-content:center;color:#1f2328}}
main{{background:#fff;padding:2rem 2.25rem;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);width:20rem}}
h1{{font-size:1.35rem;margin:0 0 .25rem}} p.sub{{margin:0 0 1.25rem;color:#57606a;font-size:.9rem}}
label{{display:block;font-size:.85rem;margin:.75rem 0 .25rem}}
input{{width:100%;box-sizing:border-box;padding:.55rem .6rem;border:1px solid #d0d7de;border-radius:6px;font-size:1rem}}
button{{margin-top:1.25rem;width:100%;padding:.6rem;border:0;border-radius:6px;background:#2f6fde;color:#fff;
font-size:1rem;cursor:pointer}} .error{{color:#b42318;font-size:.9rem;margin-top:.75rem}}
.alt{{margin-top:1rem;font-size:.85rem;text-align:center}}
</style></head>
<body><main><h1>GuardChat</h1><p class="sub">{subtitle}</p>
<form method="post" action="{action}">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="{autocomplete}" required>
<button type="submit">{button}</button>{error}</form>{alt}</main></body></html>"""


def _page(*, signup: bool, error: str = "", open_signup: bool = False, status: int = 200) -> HTMLResponse:
    err = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    if signup:
        alt = '<p class="alt"><a href="/login">I have an account</a></p>'
        body = PAGE.format(
            title="Sign up",
            subtitle="Create your account",
            action="/signup",
            autocomplete="new-password",
            button="Create account",
            error=err,
            alt=alt,
        )
    else:
        alt = '<p class="alt"><a href="/signup">Create an account</a></p>' if open_signup else ""
        body = PAGE.format(
            title="Sign in",
            subtitle="Sign in to chat",
            action="/login",
            autocomplete="current-password",
            button="Sign in",
            error=err,
            alt=alt,
        )
    return HTMLResponse(body, status_code=status)


def build_auth_router(ctx: AppContext) -> APIRouter:
    router = APIRouter()
    _add_sign_in_routes(router, ctx)
    _add_sign_up_routes(router, ctx)
    _add_sign_out_route(router, ctx)
    return router


def _add_sign_in_routes(router: APIRouter, ctx: AppContext) -> None:
    @router.get("/login", include_in_schema=False)
    async def login_form(request: Request) -> Response:
        if await request_user(ctx, request) is not None:
            return RedirectResponse("/", status_code=303)
        return _page(signup=False, open_signup=ctx.settings.open_signup)

    @router.post("/login", include_in_schema=False)
    async def login(request: Request, username: str = Form(...), password: str = Form(...)) -> Response:
        def check() -> User | None:
            with ctx.db.write() as s:
                return users.authenticate(s, username=username[:200], password=password[:1024])

        user = await asyncio.to_thread(check)
        if user is None:
            log.info("sign-in refused", extra={"username": username[:64]})
            return _page(
                signup=False,
                error="Wrong username or password, or the account is suspended.",
                open_signup=ctx.settings.open_signup,
                status=401,
            )
        sign_in(request.session, user)
        return RedirectResponse("/", status_code=303)


def _add_sign_up_routes(router: APIRouter, ctx: AppContext) -> None:
    @router.get("/signup", include_in_schema=False)
    async def signup_form() -> Response:
        if not ctx.settings.open_signup:
            return RedirectResponse("/login", status_code=303)
        return _page(signup=True)

    @router.post("/signup", include_in_schema=False)
    async def signup(request: Request, username: str = Form(...), password: str = Form(...)) -> Response:
        if not ctx.settings.open_signup:
            return Response("sign-up is closed", status_code=403)

        def create() -> User:
            with ctx.db.write() as s:
                return users.create_user(s, username=username, password=password, role="user")

        try:
            user = await asyncio.to_thread(create)
        except StoreError as exc:
            return _page(signup=True, error=str(exc), status=400)
        sign_in(request.session, user)
        return RedirectResponse("/", status_code=303)


def _add_sign_out_route(router: APIRouter, ctx: AppContext) -> None:
    @router.api_route("/logout", methods=["GET", "POST"], include_in_schema=False)
    async def logout(request: Request) -> Response:
        if request.headers.get("sec-fetch-site") == "cross-site":
            # Another site linking here signs this browser out, not the user's other devices.
            request.session.clear()
        else:
            await asyncio.to_thread(sign_out, ctx.db, request.session)
        return RedirectResponse("/login", status_code=303)
