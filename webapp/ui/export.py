"""Export one conversation as Markdown or JSON: a download for the signed-in owner only."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from webapp.context import AppContext
from webapp.services.conversations import Conversation, Message
from webapp.services.errors import NotFoundError
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


def export_body(conversation: Conversation, messages: Sequence[Message], fmt: ExportFormat) -> str:
    if fmt == "json":
        return json.dumps(conversation_json(conversation, messages), ensure_ascii=False, indent=2)
    return conversation_markdown(conversation, messages)


def build_export_router(ctx: AppContext) -> APIRouter:
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
        filename = _filename(conversation, fmt)
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
