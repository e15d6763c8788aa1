"""GET /moderation/export.csv|jsonl?<queue filter>: the filtered flags with transcripts, as a download."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse

from webapp.context import AppContext
from webapp.services.errors import InvalidInputError, PermissionDeniedError
from webapp.ui.moderation.filters import QueueForm


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
