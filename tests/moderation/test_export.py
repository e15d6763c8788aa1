"""Exports hold exactly the flags the queue filter matches, with their transcripts, as CSV and JSONL."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.moderation.queue_seed import DAY0, SeededQueue, add_account, blocked_turn
from tests.support.moderation.staff_server import StaffApp
from webapp.moderation.export import start_export
from webapp.moderation.queue import QueueFilter, list_queue
from webapp.store.engine import Database
from webapp.store.errors import InvalidInputError
from webapp.store.models import ModerationEvent
from webapp.ui.moderation.filters import QueueForm


def expected_ids(staff_app: StaffApp, form: QueueForm) -> list[int]:
    with staff_app.app.ctx.db.read() as s:
        page = list_queue(s, actor=staff_app.seeded.moderator, filters=form.to_filter(), sort=form.sort, limit=200)
    return [item.id for item in page.items]


def download(staff_app: StaffApp, fmt: str, form: QueueForm) -> tuple[list[dict[str, Any]], str]:
    with staff_app.client("mod") as client:
        response = client.get(f"/moderation/export.{fmt}?{form.query_string()}")
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].startswith('attachment; filename="guardchat-flags-')
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(response.text))), response.text
    return [json.loads(line) for line in response.text.splitlines()], response.text


FORMS = {
    "default (open)": QueueForm(),
    "every status, oldest": QueueForm(status="any", sort="oldest"),
    "one user": QueueForm(status="any", user="bob"),
    "rail": QueueForm(rail="check abuse output"),
    "text": QueueForm(status="any", text="bomb"),
    "most flagged": QueueForm(status="any", sort="most_flagged"),
    "nothing": QueueForm(user="nobody-at-all"),
}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("name", list(FORMS))
def test_export_holds_exactly_the_filtered_flags(staff_app: StaffApp, fmt: str, name: str) -> None:
    form = FORMS[name]
    rows, _ = download(staff_app, fmt, form)
    assert [int(r["flag_id"]) for r in rows] == expected_ids(staff_app, form)


def test_export_carries_transcripts_and_moderator_only_text(staff_app: StaffApp) -> None:
    a2 = staff_app.seeded.flags["a2"]
    form = QueueForm(status="any", rail="check abuse output")
    records, _ = download(staff_app, "jsonl", form)
    record = next(r for r in records if r["flag_id"] == a2)
    assert record["blocked_text"] == "Once upon a time <script>alert('x')</script> you fool"
    flagged = [turn for turn in record["transcript"] if turn["flagged"]]
    assert [t["content"] for t in flagged] == ["I can't share that response."]
    assert [t["role"] for t in record["transcript"]][:2] == ["user", "assistant"]

    rows, _ = download(staff_app, "csv", form)
    row = next(r for r in rows if int(r["flag_id"]) == a2)
    assert "[assistant (blocked, FLAGGED)] I can't share that response." in row["transcript"]
    assert row["blocked_text"] == record["blocked_text"]


def test_every_export_is_audited(staff_app: StaffApp) -> None:
    download(staff_app, "csv", QueueForm(user="bob", status="any"))
    with staff_app.app.ctx.db.read() as s:
        event = s.scalars(select(ModerationEvent).order_by(ModerationEvent.id.desc()).limit(1)).one()
    assert event.action == "export" and event.actor_id == staff_app.seeded.moderator.id
    assert event.details["flags"] == 3 and event.details["filters"]["username"] == "bob"


def test_bad_filter_in_the_link_is_named(staff_app: StaffApp) -> None:
    with staff_app.client("mod") as client:
        response = client.get("/moderation/export.csv?since=yesterday")
    assert response.status_code == 400
    assert "from date 'yesterday' is not a date" in response.text


def test_spreadsheet_formulas_in_user_text_stay_text(sqlite_database: Database, seeded_sqlite: SeededQueue) -> None:
    mallory = add_account(sqlite_database, "mallory")
    blocked_turn(
        sqlite_database,
        seeded_sqlite,
        mallory,
        "M",
        "m1",
        at=DAY0 + timedelta(days=6),
        user_text='=HYPERLINK("http://evil.example","click")',
        stage="input",
        rail="check jailbreak",
        reason="formula",
    )
    export = start_export(
        sqlite_database,
        actor=seeded_sqlite.moderator,
        filters=QueueFilter(username="mallory"),
        sort="newest",
        fmt="csv",
        max_flags=10,
    )
    rows = list(csv.DictReader(io.StringIO("".join(export.chunks))))
    assert rows[0]["excerpt"] == "'" + '=HYPERLINK("http://evil.example","click")'


def test_export_size_limit_is_named(sqlite_database: Database, seeded_sqlite: SeededQueue) -> None:
    with pytest.raises(InvalidInputError, match="matches 6 flags; an export holds at most 5"):
        start_export(
            sqlite_database,
            actor=seeded_sqlite.moderator,
            filters=QueueFilter(status=None),
            sort="newest",
            fmt="csv",
            max_flags=5,
        )
