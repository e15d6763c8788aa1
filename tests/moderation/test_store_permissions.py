"""Every moderation store function checks the acting user's role itself, whatever called it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.support.moderation.queue_seed import DAY0, SeededQueue
from webapp.moderation import detail, export, queue, stats
from webapp.moderation.queue import QueueFilter
from webapp.store import accounts, audit, flags, permissions
from webapp.store.engine import Database
from webapp.store.errors import PermissionDeniedError
from webapp.store.models import Flag, ModerationEvent, User

Call = Callable[[Database, User, SeededQueue], Any]


def _in_session(fn: Callable[..., Any], **kwargs: Any) -> Call:
    def call(db: Database, actor: User, seeded: SeededQueue) -> Any:
        resolved = {k: v(seeded) if callable(v) else v for k, v in kwargs.items()}
        with db.write() as session:
            return fn(session, actor=actor, **resolved)

    return call


def _export(db: Database, actor: User, seeded: SeededQueue) -> Any:
    started = export.start_export(db, actor=actor, filters=QueueFilter(), sort="newest", fmt="csv", max_flags=100)
    return list(started.chunks)


STAFF_CALLS: dict[str, Call] = {
    "list_queue": _in_session(queue.list_queue),
    "count_queue": _in_session(queue.count_queue),
    "known_rails": _in_session(queue.known_rails),
    "load_flag_detail": _in_session(detail.load_flag_detail, flag_id=lambda s: s.flags["a1"]),
    "moderation_stats": _in_session(stats.moderation_stats, since=DAY0, until=DAY0 + timedelta(days=7)),
    "start_export": _export,
    "list_audit": _in_session(audit.list_audit),
    "record_event": _in_session(audit.record_event, action="confirm", flag_id=lambda s: s.flags["a1"]),
    "act_on_flag": _in_session(flags.act_on_flag, flag_id=lambda s: s.flags["a1"], action="confirm"),
    "act_on_flags": _in_session(
        flags.act_on_flags, flag_ids=lambda s: [s.flags["a1"], s.flags["b1"]], action="dismiss"
    ),
    "ban_user": _in_session(accounts.ban_user, user_id=lambda s: s.bob.id),
    "unban_user": _in_session(accounts.unban_user, user_id=lambda s: s.bob.id),
}
ADMIN_CALLS: dict[str, Call] = {
    "list_accounts": _in_session(accounts.list_accounts),
    "create_account": _in_session(accounts.create_account, username="carol", password="password123"),
    "set_account_role": _in_session(accounts.set_account_role, user_id=lambda s: s.bob.id, role="moderator"),
}
MODULES: tuple[ModuleType, ...] = (permissions, audit, flags, accounts, queue, detail, stats, export)
GUARDS = {"require_staff", "require_admin"}


def test_the_registries_cover_every_public_function_that_takes_an_actor() -> None:
    public = {
        name
        for module in MODULES
        for name, fn in vars(module).items()
        if inspect.isfunction(fn)
        and fn.__module__ == module.__name__
        and not name.startswith("_")
        and "actor" in inspect.signature(fn).parameters
    }
    assert public - GUARDS == set(STAFF_CALLS) | set(ADMIN_CALLS)


def _state(db: Database) -> tuple[list[tuple[int, str, int]], int, list[tuple[str, str]]]:
    with db.read() as s:
        flags = [tuple(r) for r in s.execute(select(Flag.id, Flag.status, Flag.version).order_by(Flag.id))]
        events = s.scalar(select(func.count(ModerationEvent.id))) or 0
        accounts = [tuple(r) for r in s.execute(select(User.username, User.role).order_by(User.id))]
    return flags, events, accounts  # type: ignore[return-value]


@pytest.mark.parametrize("name", [*STAFF_CALLS, *ADMIN_CALLS])
def test_a_plain_user_is_refused_and_nothing_changes(
    sqlite_database: Database, seeded_sqlite: SeededQueue, name: str
) -> None:
    call = {**STAFF_CALLS, **ADMIN_CALLS}[name]
    before = _state(sqlite_database)
    with pytest.raises(PermissionDeniedError, match=r"moderators only|admins only"):
        call(sqlite_database, seeded_sqlite.alice, seeded_sqlite)
    assert _state(sqlite_database) == before


@pytest.mark.parametrize("name", list(ADMIN_CALLS))
def test_a_moderator_is_refused_admin_functions(
    sqlite_database: Database, seeded_sqlite: SeededQueue, name: str
) -> None:
    with pytest.raises(PermissionDeniedError, match="admins only"):
        ADMIN_CALLS[name](sqlite_database, seeded_sqlite.moderator, seeded_sqlite)


def test_a_demoted_or_banned_moderator_is_refused_at_once(
    sqlite_database: Database, seeded_sqlite: SeededQueue
) -> None:
    seeded = seeded_sqlite
    stale = seeded.moderator  # the object a request loaded before the change
    with sqlite_database.write() as s:
        accounts.set_account_role(s, actor=seeded.admin, user_id=stale.id, role="user")
    with pytest.raises(PermissionDeniedError):
        STAFF_CALLS["act_on_flag"](sqlite_database, stale, seeded)
    with sqlite_database.write() as s:
        accounts.ban_user(s, actor=seeded.admin, user_id=seeded.moderator2.id)
    with pytest.raises(PermissionDeniedError):
        STAFF_CALLS["list_queue"](sqlite_database, seeded.moderator2, seeded)


@pytest.mark.parametrize("name", list(STAFF_CALLS))
def test_a_moderator_may_use_every_staff_function(
    sqlite_database: Database, seeded_sqlite: SeededQueue, name: str
) -> None:
    seeded = seeded_sqlite
    if name == "unban_user":
        with sqlite_database.write() as s:
            accounts.ban_user(s, actor=seeded.moderator, user_id=seeded.bob.id)
    STAFF_CALLS[name](sqlite_database, seeded.moderator, seeded)
