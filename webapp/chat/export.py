"""One conversation as its owner downloads it, in Markdown or JSON (the route is in ``api/exports.py``)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from webapp.guard.verdict import checks_of
from webapp.store.models import Conversation, Message

ExportFormat = Literal["md", "json"]
MEDIA_TYPES = {"md": "text/markdown; charset=utf-8", "json": "application/json"}
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def export_path(conversation_id: int, fmt: ExportFormat) -> str:
    return f"/export/{conversation_id}.{fmt}"


def export_filename(conversation: Conversation, fmt: ExportFormat) -> str:
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
