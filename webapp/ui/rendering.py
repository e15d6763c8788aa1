"""Stored messages → what the Chatbot shows.

Everything the browser renders as Markdown passes through ``safe_markdown`` first: model text (and the
user's own text) can never become live HTML, an image fetch or a script link, whatever the rails did.
The verdict stored on a message is read for its ``checks`` only; its blocked text and the self-check
prompts never reach this page (``read_transcript`` leaves them in the database).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webapp.guard.markup import neutralise
from webapp.guard.verdict import rail_checks
from webapp.services.conversations import TranscriptMessage

FLAGGED_NOTE = "This turn was flagged for review."
INTERRUPTED_NOTE = "Stopped: this reply is incomplete."
FAILED_NOTE = "No reply: the turn failed. Try regenerating."
STILL_WRITING_NOTE = "Still writing…"
CHECKING_TITLE = "Checking your message…"
CHECKING_BODY = "The safety rails check every message before the model sees it."

ChatMessage = dict[str, Any]


def safe_markdown(text: str) -> str:
    """Markdown with raw HTML, images and script links made inert (code blocks stay verbatim)."""
    return neutralise(text).text


def _note(text: str) -> str:
    return f"*{text}*"


def _cell(text: str) -> str:
    return safe_markdown(text).replace("|", "\\|").replace("\n", " ")


def _duration(ms: float) -> str:
    return f"{ms:.0f} ms" if ms >= 1 else "<1 ms"


def checks_details(checks: Sequence[Mapping[str, Any]]) -> ChatMessage | None:
    """A collapsed "details" entry listing which rails checked a reply and how long each took."""
    if not checks:
        return None
    total = sum(float(c.get("duration_ms") or 0.0) for c in checks)
    rows = ["| Rail | Stage | Result | Time |", "|---|---|---|---|"]
    for check in checks:
        result = "blocked" if check.get("blocked") else "passed"
        reason = check.get("reason")
        if reason:
            result = f"{result}: {reason}"
        rows.append(
            f"| {_cell(str(check.get('name', '?')))} | {_cell(str(check.get('stage', '')))} "
            f"| {_cell(result)} | {_duration(float(check.get('duration_ms') or 0.0))} |"
        )
    count = len(checks)
    return {
        "role": "assistant",
        "content": "\n".join(rows),
        "metadata": {
            "title": f"Checked by {count} rail{'' if count == 1 else 's'} · {_duration(total)}",
            "status": "done",
        },
    }


def assistant_text(content: str, status: str) -> str:
    """The reply as shown for its final (or current) status."""
    body = safe_markdown(content)
    note = {
        "blocked": FLAGGED_NOTE,
        "interrupted": INTERRUPTED_NOTE,
        "error": FAILED_NOTE,
        "streaming": STILL_WRITING_NOTE,
        "pending": STILL_WRITING_NOTE,
    }.get(status)
    if note is None:
        return body
    return f"{body}\n\n{_note(note)}" if body.strip() else _note(note)


@dataclass
class ChatView:
    """The Chatbot value, with the stored message behind each entry (details entries point at their reply)."""

    messages: list[ChatMessage] = field(default_factory=list)
    message_ids: list[int | None] = field(default_factory=list)

    def add(self, message: ChatMessage, message_id: int | None) -> None:
        self.messages.append(message)
        self.message_ids.append(message_id)

    def message_id_at(self, index: int) -> int | None:
        return self.message_ids[index] if 0 <= index < len(self.message_ids) else None


def render_messages(messages: Sequence[TranscriptMessage]) -> ChatView:
    view = ChatView()
    for message in messages:
        if message.role == "user":
            view.add({"role": "user", "content": safe_markdown(message.content)}, message.id)
        elif message.role == "assistant":
            view.add({"role": "assistant", "content": assistant_text(message.content, message.status)}, message.id)
            details = checks_details(rail_checks(message.checks))
            if details is not None:
                view.add(details, message.id)
    return view


def checking_placeholder() -> ChatMessage:
    """Shown in place of the reply while the input rails run."""
    return {
        "role": "assistant",
        "content": CHECKING_BODY,
        "metadata": {"title": CHECKING_TITLE, "status": "pending"},
    }


def live_reply(text: str) -> ChatMessage:
    return {"role": "assistant", "content": safe_markdown(text)}
