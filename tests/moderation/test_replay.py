"""`guardchat eval replay`: today's rails over stored turns, on SQLite and PostgreSQL, never calling the model."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support.guard.scripted_model import SCRIPT
from tests.support.moderation.flagged_turns import seed_flagged_turns
from webapp.cli import main
from webapp.guard.turn import TurnGuard
from webapp.moderation.replay import ALLOWED, format_report, replay, replay_settings, stored_turns
from webapp.settings import Settings
from webapp.store import conversations as conv
from webapp.store.engine import Database
from webapp.store.flags import act_on_flag, report_message
from webapp.store.models import User

# Two words: the abuse rail decides alone (the learned rail judges three words or more and, on longer abuse,
# may be the first to stop the turn).
OLD_MISS = "Stupid fuckwit"


def _an_old_miss(database: Database) -> None:
    """A turn that older rails let through and a moderator later confirmed as a miss (a user report)."""
    with database.write() as s:
        alice = s.scalars(select(User).where(User.username == "alice")).one()
        moderator = s.scalars(select(User).where(User.username == "mod")).one()
        _, rows = conv.start_conversation(
            s,
            user=alice,
            title="old",
            system_prompt="",
            sampling={},
            messages=[
                conv.NewMessage(role="user", content=OLD_MISS),
                conv.NewMessage(role="assistant", content="Sure, whatever you say."),
            ],
        )
        rows[-1].verdict = {"allowed": True, "stage": None, "rail": None}
        flag = report_message(s, user=alice, message_id=rows[-1].id, reason="it went along with abuse")
        act_on_flag(s, actor=moderator, flag_id=flag.id, action="confirm")


async def test_replay_reports_what_todays_rails_change_by_rail_and_verdict(
    database: Database, scripted_chat_settings: Settings
) -> None:
    await seed_flagged_turns(database, scripted_chat_settings)
    _an_old_miss(database)
    with database.read() as s:
        turns = stored_turns(s, since=None, limit=100, window_turns=scripted_chat_settings.input_window_turns)
    assert len(turns) == 5
    assert [t.recorded == ALLOWED for t in turns] == [False, False, True, False, True]
    calls_before = len(SCRIPT.calls)
    report = await replay(TurnGuard.load(replay_settings(scripted_chat_settings)), turns)
    assert len(SCRIPT.calls) == calls_before  # no model call, not even a rail's
    assert report.turns == 5 and report.unchanged == 4
    [(was, now, label)] = list(report.changed)
    assert (was, label) == (ALLOWED, "confirmed") and now == "check abuse input"
    text = format_report(report, self_check_was_on=True)
    assert "| allowed | check abuse input | confirmed | 1 |" in text
    assert "self-check rails" in text


async def test_limit_and_since_bound_the_replay(database: Database, scripted_chat_settings: Settings) -> None:
    await seed_flagged_turns(database, scripted_chat_settings)
    with database.read() as s:
        assert len(stored_turns(s, since=None, limit=2, window_turns=4)) == 2
        from datetime import UTC, datetime, timedelta

        assert stored_turns(s, since=datetime.now(UTC) + timedelta(days=1), limit=100, window_turns=4) == []


def test_the_cli_replays_and_prints_the_report(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from webapp.store.migrate import upgrade

    upgrade(sqlite_url)
    monkeypatch.setenv("GUARDCHAT_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("GUARDCHAT_LLM_BACKEND", "scripted")
    TurnGuard.clear_cache()
    assert main(["eval", "replay", "--limit", "0"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err
    assert main(["eval", "replay", "--since", "2026-01-01"]) == 0
    out = capsys.readouterr()
    assert "0 turns replayed" in out.out and "replaying 0 stored turns" in out.err
