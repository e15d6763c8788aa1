"""Export exactly the flags a queue filter matches, with their transcripts, as CSV or JSONL.

Rows stream out page by page (the queue's own keyset pages), so an export of thousands of flags never
sits in memory whole. Starting an export is itself audited: transcripts are the users' data.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.moderation.detail import verdict_holder
from webapp.moderation.queue import QueueFilter, QueueItem, as_utc, count_queue, list_queue
from webapp.store.audit import record_event
from webapp.store.engine import Database
from webapp.store.errors import InvalidInputError
from webapp.store.models import Message, User
from webapp.store.permissions import require_staff

ExportFormat = Literal["csv", "jsonl"]
EXPORT_FORMATS: tuple[str, ...] = ("csv", "jsonl")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
CSV_COLUMNS = (
    "flag_id",
    "created_at",
    "status",
    "source",
    "rail",
    "reason",
    "excerpt",
    "username",
    "user_id",
    "conversation_id",
    "message_id",
    "assignee",
    "blocked_text",
    "transcript",
)
PAGE = 200
# A spreadsheet runs a cell that starts with one of these as a formula; user and model text must not.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class FlagExport:
    filename: str
    media_type: str
    count: int
    chunks: Iterator[str]


def _inert_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def _turns(messages: Sequence[Message], flagged_id: int | None) -> list[dict[str, Any]]:
    return [
        {
            "id": m.id,
            "role": m.role,
            "status": m.status,
            "content": m.content,
            "created_at": as_utc(m.created_at).isoformat(),
            "withdrawn": m.seq < 0,
            "flagged": m.id == flagged_id,
        }
        for m in messages
    ]


def _transcript_text(turns: list[dict[str, Any]]) -> str:
    lines = []
    for turn in turns:
        marks = [turn["status"]] if turn["status"] != "complete" else []
        marks += ["withdrawn"] if turn["withdrawn"] else []
        marks += ["FLAGGED"] if turn["flagged"] else []
        label = turn["role"] + (f" ({', '.join(marks)})" if marks else "")
        lines.append(f"[{label}] {turn['content']}")
    return "\n".join(lines)


def _records(session: Session, items: list[QueueItem]) -> Iterator[dict[str, Any]]:
    conversation_ids = sorted({item.conversation_id for item in items})
    by_conversation: dict[int, list[Message]] = {cid: [] for cid in conversation_ids}
    for message in session.scalars(
        select(Message).where(Message.conversation_id.in_(conversation_ids)).order_by(Message.id)
    ):
        by_conversation[message.conversation_id].append(message)
    for item in items:
        messages = by_conversation[item.conversation_id]
        holder = verdict_holder(messages, item.message_id)
        blocked = (holder.verdict or {}).get("blocked_text") if holder is not None else None
        yield {
            "flag_id": item.id,
            "created_at": item.created_at.isoformat(),
            "status": item.status,
            "source": item.source,
            "rail": item.rail,
            "reason": item.reason,
            "excerpt": item.excerpt,
            "username": item.username,
            "user_id": item.user_id,
            "conversation_id": item.conversation_id,
            "message_id": item.message_id,
            "assignee": item.assignee,
            "blocked_text": blocked if isinstance(blocked, str) else None,
            "transcript": _turns(messages, item.message_id),
        }


def _csv_line(values: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


def _stream(db: Database, actor: User, filters: QueueFilter, sort: str, fmt: str) -> Iterator[str]:
    if fmt == "csv":
        yield _csv_line(CSV_COLUMNS)
    after: str | None = None
    while True:
        with db.read() as session:
            page = list_queue(session, actor=actor, filters=filters, sort=sort, after=after, limit=PAGE)
            records = list(_records(session, page.items))
        for record in records:
            if fmt == "csv":
                record["transcript"] = _transcript_text(record["transcript"])
                yield _csv_line([_inert_cell(record[column]) for column in CSV_COLUMNS])
            else:
                yield json.dumps(record, ensure_ascii=False) + "\n"
        if page.next_cursor is None:
            return
        after = page.next_cursor


def start_export(db: Database, *, actor: User, filters: QueueFilter, sort: str, fmt: str, max_flags: int) -> FlagExport:
    """Check the role and the size, audit the export, and return its (lazy) body."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidInputError(f"unknown export format {fmt!r}; expected one of: {', '.join(EXPORT_FORMATS)}")
    with db.write() as session:
        staff = require_staff(session, actor)
        count = count_queue(session, actor=staff, filters=filters)
        if count > max_flags:
            raise InvalidInputError(
                f"the filter matches {count} flags; an export holds at most {max_flags} "
                "(GUARDCHAT_MODERATION_EXPORT_MAX_FLAGS). Narrow the filters."
            )
        details = {"format": fmt, "flags": count, "filters": filters.describe()}
        record_event(session, actor=staff, action="export", details=details)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return FlagExport(
        filename=f"guardchat-flags-{stamp}.{fmt}",
        media_type=MEDIA_TYPES[fmt],
        count=count,
        chunks=_stream(db, actor, filters, sort, fmt),
    )
