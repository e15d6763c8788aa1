"""Moderator actions: state changes, the conflict case, bans, roles, and the append-only audit trail."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from tests.support.moderation.queue_seed import DAY0, PASSWORD, SeededQueue
from webapp.store import users
from webapp.store.accounts import ban_user, create_account, set_account_role, unban_user
from webapp.store.audit import AuditFilter, list_audit
from webapp.store.engine import Database
from webapp.store.errors import ConflictError, InvalidInputError, PermissionDeniedError, StoreError
from webapp.store.flags import act_on_flag, act_on_flags
from webapp.store.models import Conversation, Flag, ModerationEvent, User
from webapp.store.permissions import Operator


def flag(db: Database, flag_id: int) -> Flag:
    with db.read() as s:
        row = s.get(Flag, flag_id)
        assert row is not None
        return row


def events(db: Database) -> list[tuple[str, str, int | None, int | None, str]]:
    with db.read() as s:
        rows = s.execute(
            select(
                User.username,
                ModerationEvent.action,
                ModerationEvent.flag_id,
                ModerationEvent.target_user_id,
                ModerationEvent.note,
            )
            .join(User, User.id == ModerationEvent.actor_id)
            .order_by(ModerationEvent.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_confirm_records_who_when_and_why(database: Database, seeded: SeededQueue) -> None:
    a1 = seeded.flags["a1"]
    with database.write() as s:
        act_on_flag(s, actor=seeded.moderator, flag_id=a1, action="confirm", note="  clear insult  ")
    row = flag(database, a1)
    assert (row.status, row.resolved_by_id, row.version) == ("confirmed", seeded.moderator.id, 2)
    assert row.resolved_at is not None
    assert events(database) == [("mod", "confirm", a1, seeded.alice.id, "clear insult")]


def test_the_second_moderator_is_told_who_resolved_it_first(database: Database, seeded: SeededQueue) -> None:
    a1 = seeded.flags["a1"]
    with database.write() as s:
        act_on_flag(s, actor=seeded.moderator, flag_id=a1, action="confirm", expected_version=1)
    already = r"Flag #\d+ was already confirmed by mod at 20\d\d-"
    with pytest.raises(ConflictError, match=already), database.write() as s:
        act_on_flag(s, actor=seeded.moderator2, flag_id=a1, action="dismiss", expected_version=1)
    assert flag(database, a1).status == "confirmed"
    assert [e[:2] for e in events(database)] == [("mod", "confirm")]


def test_acting_on_a_stale_view_is_a_conflict_naming_the_change(database: Database, seeded: SeededQueue) -> None:
    b1 = seeded.flags["b1"]
    with database.write() as s:
        act_on_flag(s, actor=seeded.moderator, flag_id=b1, action="escalate", expected_version=1)
    # mod2 still looks at version 1: escalated flags may be confirmed, but not on a stale view.
    with pytest.raises(ConflictError, match="changed since you loaded it: escalated by mod"), database.write() as s:
        act_on_flag(s, actor=seeded.moderator2, flag_id=b1, action="confirm", expected_version=1)
    with database.write() as s:
        act_on_flag(s, actor=seeded.moderator2, flag_id=b1, action="confirm", expected_version=2)
    assert flag(database, b1).status == "confirmed"


def test_two_moderators_at_the_same_moment_one_wins(database: Database, seeded: SeededQueue) -> None:
    a2 = seeded.flags["a2"]
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def act(moderator: User, action: str) -> None:
        barrier.wait()
        try:
            with database.write() as s:
                act_on_flag(s, actor=moderator, flag_id=a2, action=action, expected_version=1)
            outcomes[moderator.username] = "done"
        except ConflictError as exc:
            outcomes[moderator.username] = str(exc)

    threads = [
        threading.Thread(target=act, args=(seeded.moderator, "confirm")),
        threading.Thread(target=act, args=(seeded.moderator2, "dismiss")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winner = next(name for name, result in outcomes.items() if result == "done")
    loser = next(name for name in outcomes if name != winner)
    assert f"by {winner}" in outcomes[loser]
    final = flag(database, a2)
    assert final.version == 2 and final.status == {"mod": "confirmed", "mod2": "dismissed"}[winner]
    assert [e[:2] for e in events(database)] == [(winner, {"mod": "confirm", "mod2": "dismiss"}[winner])]


def test_assign_and_unassign(database: Database, seeded: SeededQueue) -> None:
    a3 = seeded.flags["a3"]
    with database.write() as s:
        act_on_flag(s, actor=seeded.moderator, flag_id=a3, action="assign")
    assert flag(database, a3).assignee_id == seeded.moderator.id
    with pytest.raises(ConflictError, match="already assigned to mod"), database.write() as s:
        act_on_flag(s, actor=seeded.moderator2, flag_id=a3, action="assign")
    with pytest.raises(ConflictError, match="already assigned to you"), database.write() as s:
        act_on_flag(s, actor=seeded.moderator, flag_id=a3, action="assign")
    with database.write() as s:
        act_on_flag(s, actor=seeded.moderator2, flag_id=a3, action="unassign", note="mod is on leave")
    assert flag(database, a3).assignee_id is None
    with pytest.raises(ConflictError, match="not assigned to anyone"), database.write() as s:
        act_on_flag(s, actor=seeded.moderator2, flag_id=a3, action="unassign")
    with pytest.raises(ConflictError, match="already confirmed"), database.write() as s:
        act_on_flag(s, actor=seeded.moderator, flag_id=seeded.flags["b3"], action="assign")
    assert [e[:2] for e in events(database)] == [("mod", "assign"), ("mod2", "unassign")]


def test_final_states_stay_final(database: Database, seeded: SeededQueue) -> None:
    with pytest.raises(ConflictError, match="already dismissed by mod"), database.write() as s:
        act_on_flag(s, actor=seeded.moderator2, flag_id=seeded.flags["b2"], action="escalate")


def test_bulk_action_applies_to_the_selection_and_names_each_refusal(database: Database, seeded: SeededQueue) -> None:
    f = seeded.flags
    with database.write() as s:
        outcome = act_on_flags(
            s, actor=seeded.moderator, flag_ids=[f["a1"], f["a2"], f["b3"], 999_999], action="dismiss", note="spam"
        )
    assert outcome.done == [f["a1"], f["a2"]]
    assert set(outcome.refused) == {f["b3"], 999_999}
    assert "already confirmed by mod" in outcome.refused[f["b3"]]
    assert "does not exist" in outcome.refused[999_999]
    assert flag(database, f["a1"]).status == flag(database, f["a2"]).status == "dismissed"
    assert [(e[1], e[2], e[4]) for e in events(database)] == [
        ("dismiss", f["a1"], "spam"),
        ("dismiss", f["a2"], "spam"),
    ]
    with pytest.raises(InvalidInputError, match="select at least one flag"), database.write() as s:
        act_on_flags(s, actor=seeded.moderator, flag_ids=[], action="dismiss")


def test_unknown_action_and_long_note_are_refused(sqlite_database: Database, seeded_sqlite: SeededQueue) -> None:
    a1 = seeded_sqlite.flags["a1"]
    with pytest.raises(InvalidInputError, match="unknown flag action 'delete'"), sqlite_database.write() as s:
        act_on_flag(s, actor=seeded_sqlite.moderator, flag_id=a1, action="delete")
    with pytest.raises(InvalidInputError, match="note is 2001 characters; the limit is 2000"):
        with sqlite_database.write() as s:
            act_on_flag(s, actor=seeded_sqlite.moderator, flag_id=a1, action="confirm", note="x" * 2001)


def test_ban_and_unban(database: Database, seeded: SeededQueue) -> None:
    with database.write() as s:
        ban_user(s, actor=seeded.moderator, user_id=seeded.bob.id, note="repeat jailbreaks", flag_id=seeded.flags["b1"])
    with database.write() as s:
        assert users.authenticate(s, username="bob", password=PASSWORD) is None
    with pytest.raises(ConflictError, match=r"bob is already banned \(by mod\)"), database.write() as s:
        ban_user(s, actor=seeded.moderator2, user_id=seeded.bob.id)
    with database.write() as s:
        unban_user(s, actor=seeded.moderator2, user_id=seeded.bob.id, note="appeal accepted")
    with database.write() as s:
        assert users.authenticate(s, username="bob", password=PASSWORD) is not None
    assert events(database) == [
        ("mod", "ban", seeded.flags["b1"], seeded.bob.id, "repeat jailbreaks"),
        ("mod2", "unban", None, seeded.bob.id, "appeal accepted"),
    ]


def test_who_may_ban_whom(sqlite_database: Database, seeded_sqlite: SeededQueue) -> None:
    seeded = seeded_sqlite
    with pytest.raises(PermissionDeniedError, match="mod2 is a moderator: only an admin"):
        with sqlite_database.write() as s:
            ban_user(s, actor=seeded.moderator, user_id=seeded.moderator2.id)
    with pytest.raises(PermissionDeniedError, match="your own account"), sqlite_database.write() as s:
        ban_user(s, actor=seeded.admin, user_id=seeded.admin.id)
    with sqlite_database.write() as s:
        ban_user(s, actor=seeded.admin, user_id=seeded.moderator2.id)


def test_no_staff_member_acts_on_an_admin(sqlite_database: Database, seeded_sqlite: SeededQueue) -> None:
    seeded = seeded_sqlite
    with sqlite_database.write() as s:
        other = users.create_user(s, username="root2", password="password123", role="admin")
    refused = r"root2 is an admin: an admin account is changed only with `guardchat users` on the server"
    for actor in (seeded.admin, seeded.moderator):
        with pytest.raises(PermissionDeniedError, match=refused), sqlite_database.write() as s:
            ban_user(s, actor=actor, user_id=other.id)
    with pytest.raises(PermissionDeniedError, match=refused), sqlite_database.write() as s:
        set_account_role(s, actor=seeded.admin, user_id=other.id, role="user")
    with sqlite_database.read() as s:
        kept = s.get(User, other.id)
        assert kept is not None and kept.role == "admin" and not kept.is_banned
    assert events(sqlite_database) == []


def test_the_command_line_acts_on_anyone_and_is_audited_as_cli(database: Database, seeded: SeededQueue) -> None:
    cli = Operator.CLI
    with database.write() as s:
        ban_user(s, actor=cli, user_id=seeded.admin.id, note="left the company")
        set_account_role(s, actor=cli, user_id=seeded.admin.id, role="user")
        unban_user(s, actor=cli, user_id=seeded.admin.id)
        ban_user(s, actor=cli, user_id=seeded.bob.id)
    with pytest.raises(ConflictError, match=r"bob is already banned \(by cli\)"), database.write() as s:
        ban_user(s, actor=seeded.moderator, user_id=seeded.bob.id)
    with database.read() as s:
        assert s.get(User, seeded.admin.id).role == "user"  # type: ignore[union-attr]
        actor_ids = set(s.scalars(select(ModerationEvent.actor_id)))
        page = list_audit(s, actor=seeded.moderator)
        cli_only = list_audit(s, actor=seeded.moderator, filters=AuditFilter(moderator="cli"))
    assert actor_ids == {None}
    assert [(e.actor, e.action, e.target_user) for e in page.entries] == [
        ("cli", "ban", "bob"),
        ("cli", "unban", "root"),
        ("cli", "set_role", "root"),
        ("cli", "ban", "root"),
    ]
    assert cli_only.entries == page.entries


def test_only_admins_change_roles_and_never_their_own(database: Database, seeded: SeededQueue) -> None:
    with pytest.raises(PermissionDeniedError, match="admins only"), database.write() as s:
        set_account_role(s, actor=seeded.moderator, user_id=seeded.moderator.id, role="admin")
    with pytest.raises(PermissionDeniedError, match="admins only"), database.write() as s:
        set_account_role(s, actor=seeded.moderator, user_id=seeded.alice.id, role="moderator")
    with pytest.raises(PermissionDeniedError, match="cannot change your own role"), database.write() as s:
        set_account_role(s, actor=seeded.admin, user_id=seeded.admin.id, role="user")
    with pytest.raises(InvalidInputError, match="unknown role 'owner'"), database.write() as s:
        set_account_role(s, actor=seeded.admin, user_id=seeded.alice.id, role="owner")
    with database.write() as s:
        set_account_role(s, actor=seeded.admin, user_id=seeded.alice.id, role="moderator", note="new hire")
        create_account(s, actor=seeded.admin, username="carol", password="password123", role="moderator")
    with database.read() as s:
        assert s.get(User, seeded.moderator.id).role == "moderator"  # type: ignore[union-attr]
        assert s.get(User, seeded.alice.id).role == "moderator"  # type: ignore[union-attr]
        carol = users.get_user_by_name(s, username="carol")
        details = [e.details for e in s.scalars(select(ModerationEvent).order_by(ModerationEvent.id))]
    assert carol is not None and carol.role == "moderator"
    assert [e[:2] for e in events(database)] == [("root", "set_role"), ("root", "create_user")]
    assert details == [{"from": "user", "to": "moderator"}, {"role": "moderator"}]


def test_audit_log_filters(database: Database, seeded: SeededQueue) -> None:
    f = seeded.flags
    with database.write() as s:
        act_on_flag(s, actor=seeded.moderator, flag_id=f["a1"], action="confirm")
        act_on_flag(s, actor=seeded.moderator2, flag_id=f["a2"], action="dismiss")
        act_on_flag(s, actor=seeded.moderator2, flag_id=f["b1"], action="escalate")
        ban_user(s, actor=seeded.moderator, user_id=seeded.alice.id)

    def audit(filters: AuditFilter, **kwargs: Any) -> list[tuple[str, str]]:
        with database.read() as s:
            page = list_audit(s, actor=seeded.moderator, filters=filters, **kwargs)
        return [(e.actor, e.action) for e in page.entries]

    everything = [("mod", "ban"), ("mod2", "escalate"), ("mod2", "dismiss"), ("mod", "confirm")]
    assert audit(AuditFilter()) == everything
    assert audit(AuditFilter(moderator="mod2")) == [("mod2", "escalate"), ("mod2", "dismiss")]
    assert audit(AuditFilter(action="confirm")) == [("mod", "confirm")]
    assert audit(AuditFilter(moderator="nobody")) == []
    with database.read() as s:
        newest = list_audit(s, actor=seeded.moderator, limit=1).entries[0].created_at
    assert audit(AuditFilter(since=newest - timedelta(days=1), until=newest + timedelta(seconds=1))) == everything
    assert audit(AuditFilter(until=DAY0)) == []
    with database.read() as s:
        first = list_audit(s, actor=seeded.moderator, limit=3)
        rest = list_audit(s, actor=seeded.moderator, limit=3, before=first.next_before)
    assert [(e.actor, e.action) for e in first.entries + rest.entries] == everything
    with pytest.raises(InvalidInputError, match="unknown action 'explode'"):
        AuditFilter(action="explode")


@pytest.fixture
def sql_log(database: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(database.writer, "before_cursor_execute", record)
    yield statements
    event.remove(database.writer, "before_cursor_execute", record)


def test_the_audit_trail_is_only_ever_appended_to(database: Database, seeded: SeededQueue, sql_log: list[str]) -> None:
    f = seeded.flags
    with database.write() as s:
        act_on_flag(s, actor=seeded.moderator, flag_id=f["a1"], action="assign")
        act_on_flag(s, actor=seeded.moderator, flag_id=f["a1"], action="unassign")
        act_on_flag(s, actor=seeded.moderator, flag_id=f["a1"], action="escalate")
        act_on_flag(s, actor=seeded.moderator, flag_id=f["a1"], action="confirm")
        act_on_flags(s, actor=seeded.moderator, flag_ids=[f["a2"], f["a3"]], action="dismiss")
        ban_user(s, actor=seeded.moderator, user_id=seeded.bob.id)
        unban_user(s, actor=seeded.moderator, user_id=seeded.bob.id)
        set_account_role(s, actor=seeded.admin, user_id=seeded.bob.id, role="moderator")
        create_account(s, actor=seeded.admin, username="dave", password="password123")
    for conflicting in ("confirm", "assign"):
        with pytest.raises(StoreError), database.write() as s:
            act_on_flag(s, actor=seeded.moderator2, flag_id=f["a1"], action=conflicting)
    touching = [q for q in sql_log if "moderation_events" in q]
    assert len([q for q in touching if q.lstrip().upper().startswith("INSERT")]) == 10
    assert not [q for q in touching if q.lstrip().upper().startswith(("UPDATE", "DELETE"))]
    assert len(events(database)) == 10


def test_conversation_flag_counter_follows_every_raised_flag(database: Database, seeded: SeededQueue) -> None:
    with database.read() as s:
        counts = {
            name: s.get(Conversation, cid).flag_count  # type: ignore[union-attr]
            for name, cid in seeded.conversations.items()
        }
    assert counts == {"A": 3, "B": 1, "B2": 2}
