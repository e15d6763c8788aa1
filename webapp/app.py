"""The composition root: settings → database → guard → services → the FastAPI app, with api and ui mounted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.orm import Session
from starlette.middleware.sessions import SessionMiddleware

from webapp.api.auth import build_auth_router
from webapp.api.body_limit import BodyLimitMiddleware
from webapp.api.exports import build_conversation_export_router, build_moderation_export_router
from webapp.api.health import build_health_router
from webapp.api.loop_lag import LoopLagProbe
from webapp.api.openai_compat import build_openai_router
from webapp.api.request_context import RequestContextMiddleware
from webapp.chat.service import ChatService
from webapp.context import AppContext
from webapp.guard.turn import TurnGuard
from webapp.llm.triton import TritonChatClient
from webapp.services.accounts import ensure_initial_admin
from webapp.settings import Settings
from webapp.store import conversations
from webapp.store.engine import Database
from webapp.store.liveness import ProcessLease

log = logging.getLogger("guardchat.app")


def build_context(settings: Settings) -> AppContext:
    db = Database(settings.resolved_database_url)
    lease = ProcessLease(db)
    guard = TurnGuard.load(settings)
    probe_client = TritonChatClient.from_settings(settings)
    return AppContext(
        settings=settings,
        db=db,
        chat=ChatService(database=db, guard=guard, settings=settings, instance_id=lease.instance_id),
        model_ready=probe_client.is_ready,
        lease=lease,
    )


async def recover_after_crash(ctx: AppContext) -> int:
    """Replies left `streaming` by a process that died are marked `interrupted`."""
    is_alive = ctx.lease.is_alive if ctx.lease is not None else (lambda _: False)

    def interrupt(session: Session) -> int:
        return conversations.interrupt_streaming_messages(session, is_alive=is_alive)

    return await ctx.db.run_write(interrupt)


def create_app(settings: Settings, ctx: AppContext | None = None, *, with_ui: bool = True) -> FastAPI:
    settings.check_secure()
    ctx = ctx or build_context(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if ctx.lease is not None:
            await asyncio.to_thread(ctx.lease.acquire)
        ensure_initial_admin(ctx.db, settings)
        recovered = await recover_after_crash(ctx)
        if recovered:
            log.warning("marked %d interrupted replies after an unclean stop", recovered)
        probe = LoopLagProbe()
        probe.start()
        yield
        await probe.stop()
        if ctx.lease is not None:
            ctx.lease.release()
        ctx.db.dispose()

    app = FastAPI(title="GuardChat", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.ctx = ctx
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key.get_secret_value(),
        session_cookie="guardchat_session",
        same_site="lax",
        https_only=settings.environment == "production",
        max_age=14 * 24 * 3600,
    )
    app.include_router(build_auth_router(ctx))
    app.include_router(build_openai_router(ctx))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)

    app.add_middleware(RequestContextMiddleware)
    app.include_router(build_health_router(ctx))

    if with_ui:
        from webapp.ui.mount import mount_pages  # Gradio loads only for an app with pages (API-only tests)

        app.include_router(build_conversation_export_router(ctx))  # the pages' download links
        app.include_router(build_moderation_export_router(ctx))
        mount_pages(app, ctx)
    return app
