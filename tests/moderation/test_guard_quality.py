"""Per-rail precision, misses and threshold suggestions from seeded flags and verdicts, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from webapp.moderation.guard_quality import MISSES, rail_weeks, threshold_points, thresholds_around
from webapp.store import conversations as conv
from webapp.store import users
from webapp.store.engine import Database
from webapp.store.errors import PermissionDeniedError
from webapp.store.flags import act_on_flag, raise_flag, report_message
from webapp.store.models import Message, User

RAIL = "check request safety"
OUT_RAIL = "check reply safety"


def _verdict(blocked_by: str | None, scores: dict[str, float]) -> dict[str, Any]:
    checks = [
        {"name": name, "stage": "output" if name == OUT_RAIL else "input", "duration_ms": 1.0,
         "blocked": name == blocked_by, "reason": None, "score": score}
        for name, score in scores.items()
    ]  # fmt: skip
    stage = None if blocked_by is None else ("output" if blocked_by == OUT_RAIL else "input")
    return {"allowed": blocked_by is None, "stage": stage, "rail": blocked_by, "score": None, "checks": checks}


def _turn(db: Database, user: User, *, blocked_by: str | None, scores: dict[str, float]) -> tuple[int, int]:
    """A stored exchange: (user message id, reply id)."""
    with db.write() as s:
        asked = conv.NewMessage(
            role="user", content="a question", status="blocked" if blocked_by == RAIL else "complete"
        )
        answer = conv.NewMessage(role="assistant", content="an answer", status="blocked" if blocked_by else "complete")
        _, rows = conv.start_conversation(
            s, user=user, title="t", system_prompt="", sampling={}, messages=[asked, answer]
        )
        rows[-1].verdict = _verdict(blocked_by, scores)
        return rows[0].id, rows[1].id


def _block(db: Database, user: User, mod: User, rail: str, score: float, verdict: str | None) -> None:
    asked, reply = _turn(db, user, blocked_by=rail, scores={RAIL: score if rail == RAIL else 0.1, OUT_RAIL: score})
    with db.write() as s:
        target = s.get(Message, asked if rail == RAIL else reply)
        assert target is not None
        flag = raise_flag(s, message=target, owner_id=user.id, source="input_rail" if rail == RAIL else "output_rail",
                          rail=rail, reason="r", text="t")  # fmt: skip
        if verdict:
            act_on_flag(s, actor=mod, flag_id=flag.id, action=verdict)


@pytest.fixture
def seeded(database: Database) -> tuple[User, User]:
    with database.write() as s:
        alice = users.create_user(s, username="alice", password="password123")
        mod = users.create_user(s, username="mod", password="password123", role="moderator")
    # The request rail: 3 confirmed (0.95, 0.92, 0.88), 1 dismissed (0.91), 1 still open (0.99).
    for score, verdict in ((0.95, "confirm"), (0.92, "confirm"), (0.88, "confirm"), (0.91, "dismiss"), (0.99, None)):
        _block(database, alice, mod, RAIL, score, verdict)
    # The reply rail: 1 dismissed.
    _block(database, alice, mod, OUT_RAIL, 0.93, "dismiss")
    # Misses: two allowed replies reported; one confirmed (request score 0.8), one dismissed (0.6).
    for score, action in ((0.8, "confirm"), (0.6, "dismiss")):
        _, reply = _turn(database, alice, blocked_by=None, scores={RAIL: score, OUT_RAIL: 0.2})
        with database.write() as s:
            flag = report_message(s, user=alice, message_id=reply, reason="harmful")
            act_on_flag(s, actor=mod, flag_id=flag.id, action=action)
    return alice, mod


WINDOW = {"since": datetime.now(UTC) - timedelta(days=7), "until": datetime.now(UTC) + timedelta(days=1)}


def test_each_rails_measured_precision_and_the_misses_found(database: Database, seeded: tuple[User, User]) -> None:
    _, mod = seeded
    with database.read() as s:
        weeks = rail_weeks(s, actor=mod, **WINDOW)
    by_rail: dict[str, list[int]] = {}
    for w in weeks:
        by_rail.setdefault(w.rail, [0, 0, 0])
        for i, n in enumerate((w.flags, w.confirmed, w.dismissed)):
            by_rail[w.rail][i] += n
    assert by_rail == {RAIL: [5, 3, 1], OUT_RAIL: [1, 0, 1], MISSES: [2, 1, 1]}
    assert all(w.week.weekday() == 0 for w in weeks)
    if len({w.week for w in weeks}) == 1:  # every flag fell in this week: the rates are exact
        rates = {w.rail: w.precision for w in weeks}
        assert rates[RAIL] == pytest.approx(0.75) and rates[OUT_RAIL] == 0.0


def test_threshold_suggestions_follow_moderators_labels(database: Database, seeded: tuple[User, User]) -> None:
    _, mod = seeded
    with database.read() as s:
        found = threshold_points(s, actor=mod, rail=RAIL, thresholds=[0.75, 0.9, 0.93], **WINDOW)
    points = {p.threshold: p for p in found}
    # Known positives: confirmed blocks 0.95, 0.92, 0.88 and the confirmed miss at 0.8. Dismissed: 0.91.
    assert (points[0.75].caught, points[0.75].positives, points[0.75].false_refusals) == (4, 4, 1)
    assert points[0.75].precision == pytest.approx(0.8) and points[0.75].recall == 1.0
    assert (points[0.9].caught, points[0.9].false_refusals) == (2, 1)
    assert points[0.9].precision == pytest.approx(2 / 3) and points[0.9].recall == pytest.approx(0.5)
    assert (points[0.93].caught, points[0.93].false_refusals) == (1, 0) and points[0.93].precision == 1.0


def test_a_plain_user_is_refused(database: Database, seeded: tuple[User, User]) -> None:
    alice, _ = seeded
    with database.read() as s, pytest.raises(PermissionDeniedError):
        rail_weeks(s, actor=alice, **WINDOW)
    with database.read() as s, pytest.raises(PermissionDeniedError):
        threshold_points(s, actor=alice, rail=RAIL, thresholds=[0.9], **WINDOW)


def test_thresholds_around_stay_inside_the_unit_interval() -> None:
    assert thresholds_around(0.9) == [0.8, 0.85, 0.9, 0.95]
    assert thresholds_around(0.98) == [0.88, 0.93, 0.98, 0.99]
