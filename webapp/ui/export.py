"""Export one conversation as Markdown or JSON: a download for the signed-in owner only."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from webapp.api.auth import request_user
from webapp.api.context import AppContext
from webapp.store import conversations as conv
from webapp.store.errors import NotFoundError
from webapp.store.models import Conversation, Message, User
from webapp.ui.rendering import checks_of

ExportFormat = Literal["md", "json"]
MEDIA_TYPES = {"md": "text/markdown; charset=utf-8", "json": "application/json"}
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def export_path(conversation_id: int, fmt: ExportFormat) -> str:
    return f"/export/{conversation_id}.{fmt}"


def _filename(conversation: Conversation, fmt: ExportFormat) -> str:
    stem = _UNSAFE_FILENAME.sub("-", conversation.title).strip("-")[:60] or "conversation"
    return f"guardchat-{conversation.id}-{stem}.{fmt}"


def _visible(messages: Sequence[Message]) -> list[Message]:
    # A reply still streaming in another tab has no final content yet.
    return [m for m in messages if m.role in ("user", "assistant") and m.status not in ("pending", "streaming")]


def conversation_json(conversation: Conversation, messages: Sequence[Message]) -> dict[str, Any]:
    """What the owner gets: their text, the replies, statuses and rail timings, never moderator-only data."""
    return {
        "id": conversation.id,
        "title": conversation.title,
        "created_at": conversation.created_at.isoformat(),
        "system_prompt": conversation.system_prompt,
        "sampling": conversation.sampling,
        "messages": [
            {
                "role": m.role,
                "status": m.status,
                "content": m.content,
                "created_at": m.created_at.isoformat(),
                "checks": checks_of(m.verdict),
            }
            for m in _visible(messages)
        ],
    }


def conversation_markdown(conversation: Conversation, messages: Sequence[Message]) -> str:
    lines = [f"# {conversation.title}", "", f"Exported from GuardChat · conversation {conversation.id}", ""]
    if conversation.system_prompt.strip():
        lines += ["**System prompt:**", "", conversation.system_prompt.strip(), ""]
    for message in _visible(messages):
        who = "You" if message.role == "user" else "Assistant"
        note = "" if message.status == "complete" else f" ({message.status})"
        lines += [f"## {who}{note}", "", message.content.strip() or "_(empty)_", ""]
    return "\n".join(lines)


def load_export(ctx: AppContext, user: User, conversation_id: int, fmt: ExportFormat) -> tuple[str, str]:
    """(filename, body) of the export; NotFoundError for a conversation the user does not own."""
    with ctx.db.read() as session:
        conversation = conv.require_conversation(session, user=user, conversation_id=conversation_id)
        messages = conv.list_messages(session, user=user, conversation_id=conversation_id)
        if fmt == "json":
            body = json.dumps(conversation_json(conversation, messages), ensure_ascii=False, indent=2)
        else:
            body = conversation_markdown(conversation, messages)
        return _filename(conversation, fmt), body


def build_export_router(ctx: AppContext) -> APIRouter:
    router = APIRouter()

    @router.get("/export/{conversation_id}.{fmt}", include_in_schema=False)
    async def export_conversation(request: Request, conversation_id: int, fmt: ExportFormat) -> Response:
        user = await request_user(ctx, request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        try:
            filename, body = await asyncio.to_thread(load_export, ctx, user, conversation_id, fmt)
        except NotFoundError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        return Response(
            body,
            media_type=MEDIA_TYPES[fmt],
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return router
