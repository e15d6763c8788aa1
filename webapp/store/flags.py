"""A flag's life: raised by a rail block, a rail error or a user report, then acted on by moderators.

Moderators' changes are conditional UPDATEs (``WHERE status IN (...) AND version = ...``): when two
moderators act on one flag, the second UPDATE matches no row and its author is told who got there first.
Every change writes its audit row in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from webapp.store.audit import FLAG_ACTIONS, PAST_TENSE, clean_note, event_actor, name_of, record_event
from webapp.store.conversations import require_message
from webapp.store.errors import ConflictError, InvalidInputError, NotFoundError, StoreError
from webapp.store.models import FLAG_SOURCES, Flag, Message, ModerationEvent, User, utcnow
from webapp.store.permissions import require_staff

EXCERPT_CHARS = 500
MAX_REPORT_REASON_CHARS = 1000
MAX_BULK_FLAGS = 200

# Which statuses each action may leave; "confirmed" and "dismissed" are final.
_TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "dismiss": (("open", "escalated"), "dismissed"),
    "confirm": (("open", "escalated"), "confirmed"),
    "escalate": (("open",), "escalated"),
}
_ACTIVE = ("open", "escalated")


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def raise_flag(
    session: Session,
    *,
    message: Message,
    owner_id: int,
    source: str,
    rail: str | None,
    reason: str,
    text: str,
) -> Flag:
    """Flag ``message`` (owned by ``owner_id``); ``text`` is what the moderator needs to see."""
    if source not in FLAG_SOURCES:
        raise InvalidInputError(f"unknown flag source {source!r}")
    flag = Flag(
        message_id=message.id,
        conversation_id=message.conversation_id,
        user_id=owner_id,
        source=source,
        rail=rail,
        reason=reason[:2000],
        excerpt=excerpt(text),
    )
    session.add(flag)
    session.flush()
    return flag


def report_message(session: Session, *, user: User, message_id: int, reason: str) -> Flag:
    """A user reports a reply in one of their own conversations."""
    reason = reason.strip()
    if not reason:
        raise InvalidInputError("a report needs a reason")
    if len(reason) > MAX_REPORT_REASON_CHARS:
        raise InvalidInputError(f"report reason is {len(reason)} characters; the limit is {MAX_REPORT_REASON_CHARS}")
    message = require_message(session, user=user, message_id=message_id)
    if message.role != "assistant":
        raise InvalidInputError("only assistant replies can be reported")
    return raise_flag(
        session,
        message=message,
        owner_id=user.id,
        source="user_report",
        rail=None,
        reason=reason,
        text=message.content,
    )


# --- moderators' actions -----------------------------------------------------------------------


def _conflict(session: Session, flag_id: int, action: str) -> StoreError:
    """Why a conditional update matched nothing: who got there first, in words for the moderator."""
    session.expire_all()
    flag = session.get(Flag, flag_id)
    if flag is None:
        return NotFoundError(f"flag #{flag_id} does not exist")
    if flag.status in ("dismissed", "confirmed"):
        when = flag.resolved_at.strftime("%Y-%m-%d %H:%M UTC") if flag.resolved_at else ""
        return ConflictError(
            f"Flag #{flag_id} was already {flag.status} by {name_of(session, flag.resolved_by_id)}"
            + (f" at {when}" if when else "")
            + "."
        )
    last = session.scalar(
        select(ModerationEvent)
        .where(ModerationEvent.flag_id == flag_id)
        .order_by(ModerationEvent.created_at.desc(), ModerationEvent.id.desc())
        .limit(1)
    )
    if action == "assign" and flag.assignee_id is not None:
        return ConflictError(f"Flag #{flag_id} is already assigned to {name_of(session, flag.assignee_id)}.")
    if action == "unassign" and flag.assignee_id is None:
        return ConflictError(f"Flag #{flag_id} is not assigned to anyone.")
    if action == "escalate" and flag.status == "escalated":
        by = event_actor(session, last) if last else "someone"
        return ConflictError(f"Flag #{flag_id} was already escalated by {by}.")
    if last is not None:
        return ConflictError(
            f"Flag #{flag_id} changed since you loaded it: {PAST_TENSE.get(last.action, last.action)} by "
            f"{event_actor(session, last)}. Reload it and try again."
        )
    return ConflictError(f"Flag #{flag_id} changed since you loaded it. Reload it and try again.")


def act_on_flag(
    session: Session,
    *,
    actor: User,
    flag_id: int,
    action: str,
    note: str = "",
    expected_version: int | None = None,
) -> ModerationEvent:
    """Dismiss, confirm, escalate, assign to the actor, or unassign one flag; returns the audit row.

    ``expected_version`` is the flag version the moderator was looking at: any change since then
    (another moderator's action) makes this a ConflictError instead of a silent overwrite.
    """
    staff = require_staff(session, actor)
    if action not in FLAG_ACTIONS:
        raise InvalidInputError(f"unknown flag action {action!r}; expected one of: {', '.join(FLAG_ACTIONS)}")
    text = clean_note(note)
    before = session.execute(select(Flag.status, Flag.assignee_id).where(Flag.id == flag_id)).first()
    if before is None:
        raise NotFoundError(f"flag #{flag_id} does not exist")

    stmt = update(Flag).where(Flag.id == flag_id)
    values: dict[str, Any] = {"version": Flag.version + 1}
    details: dict[str, Any] = {}
    if action in _TRANSITIONS:
        sources, target = _TRANSITIONS[action]
        stmt = stmt.where(Flag.status.in_(sources))
        final = target in ("dismissed", "confirmed")
        values.update(
            status=target, resolved_at=utcnow() if final else None, resolved_by_id=staff.id if final else None
        )
        details = {"from": before.status, "to": target}
    elif action == "assign":
        if before.assignee_id == staff.id:
            raise ConflictError(f"Flag #{flag_id} is already assigned to you.")
        stmt = stmt.where(Flag.status.in_(_ACTIVE), Flag.assignee_id.is_(None))
        values["assignee_id"] = staff.id
        details = {"assignee": staff.username}
    else:
        stmt = stmt.where(Flag.assignee_id.is_not(None))
        values["assignee_id"] = None
        details = {"previous_assignee": name_of(session, before.assignee_id)}
    if expected_version is not None:
        stmt = stmt.where(Flag.version == expected_version)

    result = session.execute(stmt.values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        if action == "assign" and before.status not in _ACTIVE:
            raise ConflictError(f"Flag #{flag_id} is already {before.status}; there is nothing left to assign.")
        raise _conflict(session, flag_id, action)
    owner_id = session.scalar(select(Flag.user_id).where(Flag.id == flag_id))
    return record_event(
        session, actor=staff, action=action, note=text, flag_id=flag_id, target_user_id=owner_id, details=details
    )


@dataclass
class BulkOutcome:
    done: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # flag id → why (conflict, not found)


def act_on_flags(
    session: Session,
    *,
    actor: User,
    flag_ids: Sequence[int],
    action: str,
    note: str = "",
    expected_versions: Mapping[int, int] | None = None,
) -> BulkOutcome:
    """The same action on a selection; each flag succeeds or is refused on its own, with the reason."""
    require_staff(session, actor)
    ids = list(dict.fromkeys(flag_ids))
    if not ids:
        raise InvalidInputError("select at least one flag")
    if len(ids) > MAX_BULK_FLAGS:
        raise InvalidInputError(f"{len(ids)} flags selected; a bulk action takes at most {MAX_BULK_FLAGS}")
    outcome = BulkOutcome()
    for flag_id in ids:
        expected = (expected_versions or {}).get(flag_id)
        try:
            act_on_flag(session, actor=actor, flag_id=flag_id, action=action, note=note, expected_version=expected)
        except (ConflictError, NotFoundError) as exc:
            outcome.refused[flag_id] = str(exc)
        else:
            outcome.done.append(flag_id)
    return outcome
