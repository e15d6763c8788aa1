"""Moderators' verdicts as eval cases: `guardchat eval export-moderation [--since DATE] FILE.jsonl`.

A resolved flag is a labelled example no outside set has: a dismissed rail block is a false refusal, a
confirmed user report on an allowed reply is a miss. Each becomes a line in rails/eval's format, so
`guardchat eval FILE` measures today's rails on real traffic:

- a blocked request: ``text`` is the user's message;
- a blocked reply or a reported one: ``text`` is the user's message before it and ``reply`` the reply (for a
  block, the text the output rails stopped, which the user never saw);
- ``should_refuse`` is the moderator's verdict (confirmed: yes; dismissed: no);
- ``recorded`` is what the rails decided then ("blocked", or "allowed" for a reported reply), with the rail,
  the flag's source and its id.

Rail errors and flags still open or escalated are left out: they carry no verdict on the text. Usernames are
never written; ``redact_contacts`` replaces e-mail addresses and phone numbers. This is an operator's tool:
it reads the database directly, on the database host.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.moderation.queue import as_utc
from webapp.store.models import Flag, Message

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_PHONE = re.compile(r"(?<![\w+(])[+(]?\d[\d ().-]{5,}\d(?!\w)")
_DECIMAL = re.compile(r"\d+\.\d+")
_EXPORTED_SOURCES = ("input_rail", "output_rail", "user_report")
_VERDICTS = {"confirmed": True, "dismissed": False}


def _phone(match: re.Match[str]) -> str:
    found = match.group(0)
    digits = sum(c.isdigit() for c in found)
    return "[phone]" if digits >= 7 and not _DECIMAL.fullmatch(found) else found


def redact(text: str) -> str:
    """E-mail addresses and phone numbers (7 digits or more, not a decimal number) replaced by placeholders."""
    return _PHONE.sub(_phone, _EMAIL.sub("[email]", text))


@dataclass(frozen=True)
class ExportSummary:
    written: int
    skipped: int  # resolved flags whose text is gone (the message was deleted)


def _user_message_before(session: Session, reply: Message) -> Message | None:
    return session.scalar(
        select(Message)
        .where(Message.conversation_id == reply.conversation_id, Message.role == "user", Message.id < reply.id)
        .order_by(Message.id.desc())
        .limit(1)
    )


def _case(session: Session, flag: Flag) -> dict[str, Any] | None:
    message = session.get(Message, flag.message_id) if flag.message_id is not None else None
    if message is None:
        return None
    case: dict[str, Any]
    if flag.source == "input_rail":
        case = {"text": message.content}
    else:
        asked = _user_message_before(session, message)
        if asked is None:
            return None
        blocked = (message.verdict or {}).get("blocked_text") if flag.source == "output_rail" else None
        case = {"text": asked.content, "reply": blocked if isinstance(blocked, str) else message.content}
    return {
        **case,
        "should_refuse": _VERDICTS[flag.status],
        "category": f"moderation:{flag.rail or flag.source}",
        "recorded": "allowed" if flag.source == "user_report" else "blocked",
        "rail": flag.rail,
        "source": flag.source,
        "flag_id": flag.id,
    }


def resolved_flags(session: Session, *, since: datetime | None = None) -> Iterator[Flag]:
    query = select(Flag).where(Flag.status.in_(tuple(_VERDICTS)), Flag.source.in_(_EXPORTED_SOURCES))
    if since is not None:
        query = query.where(Flag.resolved_at >= as_utc(since))
    yield from session.scalars(query.order_by(Flag.id).execution_options(yield_per=500))


def export_cases(
    session: Session, path: Path, *, since: datetime | None = None, redact_contacts: bool = False
) -> ExportSummary:
    """Write the resolved flags (resolved at or after ``since``) to ``path`` as JSONL eval cases."""
    written = skipped = 0
    with path.open("w", encoding="utf-8") as out:
        for flag in resolved_flags(session, since=since):
            case = _case(session, flag)
            if case is None:
                skipped += 1
                continue
            if redact_contacts:
                case["text"] = redact(case["text"])
                if "reply" in case:
                    case["reply"] = redact(case["reply"])
            out.write(json.dumps(case, ensure_ascii=False) + "\n")
            written += 1
    return ExportSummary(written, skipped)
