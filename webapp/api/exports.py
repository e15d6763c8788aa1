"""Downloads: a conversation for its owner (Markdown or JSON), and the moderation queue's flags (CSV or JSONL).

Both are plain HTTP routes under the session sign-in; each asks its service, which checks who may see what.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse

from webapp.chat.export import MEDIA_TYPES, ExportFormat, export_body, export_filename
from webapp.context import AppContext
from webapp.moderation.queue_form import QueueForm
from webapp.services.errors import InvalidInputError, NotFoundError, PermissionDeniedError


def build_conversation_export_router(ctx: AppContext) -> APIRouter:
    router = APIRouter()

    @router.get("/export/{conversation_id}.{fmt}", include_in_schema=False)
    async def export_conversation(request: Request, conversation_id: int, fmt: ExportFormat) -> Response:
        user = await ctx.accounts.session_user(request.session)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        try:
            conversation, messages = await ctx.conversations.export(user, conversation_id=conversation_id)
        except NotFoundError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        filename = export_filename(conversation, fmt)
        return Response(
            export_body(conversation, messages, fmt),
            media_type=MEDIA_TYPES[fmt],
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return router


def build_moderation_export_router(ctx: AppContext, path: str = "/moderation") -> APIRouter:
    router = APIRouter()

    @router.get(f"{path}/export.{{fmt}}", include_in_schema=False)
    async def export_flags(request: Request, fmt: Literal["csv", "jsonl"]) -> Response:
        user = await ctx.accounts.session_user(request.session)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        try:
            form = QueueForm.from_query(request.query_params)
            export = await ctx.moderation.export(
                user,
                filters=form.to_filter(),
                sort=form.sort,
                fmt=fmt,
                max_flags=ctx.settings.moderation_export_max_flags,
            )
        except PermissionDeniedError as exc:
            return PlainTextResponse(str(exc), status_code=403)
        except InvalidInputError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return StreamingResponse(
            export.chunks,
            media_type=export.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{export.filename}"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "X-GuardChat-Flags": str(export.count),
            },
        )

    return router
