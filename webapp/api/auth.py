"""Sign-in, sign-out and sign-up pages; who a session belongs to is ``AppContext.accounts``' business."""

from __future__ import annotations

import html
import logging

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from webapp.context import AppContext
from webapp.services.accounts import User, sign_in
from webapp.services.errors import StoreError

log = logging.getLogger("guardchat.auth")


async def request_user(ctx: AppContext, request: Request) -> User | None:
    return await ctx.accounts.session_user(request.session)


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
        user = await ctx.accounts.authenticate(username=username[:200], password=password[:1024])
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

        try:
            user = await ctx.accounts.sign_up(username=username, password=password)
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
            await ctx.accounts.sign_out(request.session)
        return RedirectResponse("/login", status_code=303)
