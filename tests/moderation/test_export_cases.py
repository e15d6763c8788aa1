"""`guardchat eval export-moderation`: resolved flags from real turns become eval cases that round-trip.

Turns run through ChatService with the real rails and the scripted model (registered through the production
seam), on SQLite and PostgreSQL; a moderator resolves the flags; the export is read back by `guardchat eval`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.moderation.flagged_turns import ABUSE, seed_flagged_turns
from webapp.cli import main
from webapp.guard.evaluation import run_eval_async
from webapp.moderation.cases import export_cases, redact
from webapp.settings import Settings
from webapp.store.engine import Database


async def test_resolved_flags_export_as_cases_that_eval_reproduces(
    database: Database, scripted_chat_settings: Settings, tmp_path: Path
) -> None:
    flags = await seed_flagged_turns(database, scripted_chat_settings)
    out = tmp_path / "moderation.jsonl"
    with database.read() as s:
        summary = export_cases(s, out, redact_contacts=True)
    assert (summary.written, summary.skipped) == (3, 0)
    raw = out.read_text("utf-8")
    assert "alice@example.org" not in raw and "[email]" in raw
    assert '"alice"' not in raw and '"mod"' not in raw  # no usernames
    cases = {c["flag_id"]: c for c in map(json.loads, raw.splitlines())}
    assert set(cases) == {flags["input"], flags["output"], flags["report"]}  # the open flag stays out

    request = cases[flags["input"]]
    assert request["should_refuse"] is True and request["recorded"] == "blocked" and "reply" not in request
    assert request["text"].startswith(ABUSE) and request["source"] == "input_rail" and request["rail"]
    reply = cases[flags["output"]]
    assert reply["should_refuse"] is False and reply["text"] == "Say something nice"
    assert "You are a fucking" in reply["reply"]  # what the output rails stopped, not the refusal shown
    report = cases[flags["report"]]
    assert report["should_refuse"] is True and report["recorded"] == "allowed"
    assert report["reply"] == "Here is a calm answer about Tell me about tea."

    # The round trip: today's rails decide each exported case as they did when it was flagged.
    results = (await run_eval_async([out], scripted_chat_settings, full_turn=False)).results
    assert len(results) == 3
    for result in results:
        recorded = json.loads(out.read_text("utf-8").splitlines()[int(result.case.source.rsplit(":", 1)[1]) - 1])
        assert result.refused == (recorded["recorded"] == "blocked"), (recorded, result.verdict)


async def test_since_keeps_only_flags_resolved_from_that_day(
    database: Database, scripted_chat_settings: Settings, tmp_path: Path
) -> None:
    await seed_flagged_turns(database, scripted_chat_settings)
    out = tmp_path / "later.jsonl"
    with database.read() as s:
        assert export_cases(s, out, since=datetime.now(UTC) + timedelta(days=1)).written == 0
        assert out.read_text("utf-8") == ""
        assert export_cases(s, out, since=datetime.now(UTC) - timedelta(days=1)).written == 3


def test_the_cli_names_a_bad_date(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["eval", "export-moderation", "--since", "last tuesday", str(tmp_path / "x.jsonl")]) == 2
    assert "--since 'last tuesday' is not a date" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("write to bob.smith+x@mail.example.co.uk today", "write to [email] today"),
        ("call me on +44 20 7946 0958 or (555) 123-4567", "call me on [phone] or [phone]"),
        ("the year 2024, 3.14159265 and 12-05 stay", "the year 2024, 3.14159265 and 12-05 stay"),
    ],
)
def test_contacts_are_redacted(text: str, redacted: str) -> None:
    assert redact(text) == redacted
