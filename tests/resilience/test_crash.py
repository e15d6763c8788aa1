"""SIGKILL the app in the middle of a streamed reply on SQLite, restart it, and check that nothing was lost.

The PostgreSQL run of the same scenario is in test_two_processes.py, where a second live process shares
the database (and must keep its own stream through the first one's restart).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.resilience.app_process import AppProcess
from tests.support.resilience.chat_api import complete, create_user_with_key
from tests.support.resilience.crash import LONG_REPLY_TEXT, app_settings, commit_turns_then_crash_mid_stream, rows
from tests.support.triton_fixtures import TritonServer
from webapp.store.engine import Database
from webapp.store.migrate import upgrade

pytestmark = pytest.mark.integration


def test_sigkill_mid_stream_on_sqlite_loses_nothing(
    triton_server: TritonServer, tmp_path: Path, sqlite_url: str
) -> None:
    upgrade(sqlite_url)
    db = Database(sqlite_url)
    _, key = create_user_with_key(db, "alice")
    app = AppProcess(tmp_path / "app", app_settings(triton_server, sqlite_url))
    app.start()
    try:
        crash = commit_turns_then_crash_mid_stream(app, db, key)

        # Straight after the crash: the committed turns are there, the reply is left `streaming` with the
        # text saved so far (the client may have read less or more of the stream than was saved by then).
        after_kill = rows(db, crash.conversation_id)
        assert after_kill[: len(crash.committed)] == crash.committed
        reply = next(r for r in after_kill if r[0] == crash.reply_id)
        assert reply[3] == "streaming" and reply[4] and LONG_REPLY_TEXT.startswith(reply[4])
        assert LONG_REPLY_TEXT.startswith(crash.shown)

        app.start()  # start-up recovery runs here
        recovered = rows(db, crash.conversation_id)
        assert recovered[: len(crash.committed)] == crash.committed
        user_msg, reply_row = recovered[len(crash.committed) :]
        assert (user_msg[2], user_msg[3]) == ("user", "interrupted")
        assert reply_row[:4] == (crash.reply_id, reply[1], "assistant", "interrupted")
        assert reply_row[4] == reply[4]  # the saved part of the reply survives
        assert _integrity(sqlite_url) == "ok"

        # The conversation goes on, and the model still sees the earlier turns.
        more = complete(app.url, key, "What was the word? {{reply:ORCHID.}}", conversation_id=crash.conversation_id)
        assert more.status_code == 200 and more.guardchat["status"] == "complete", more.body
        prompt = triton_server.find_request("nemo2", "What was the word?").prompt
        assert "Remember the word ORCHID" in prompt and "Noted: 42." in prompt
        assert [r[3] for r in rows(db, crash.conversation_id)][-2:] == ["complete", "complete"]
        assert "database is locked" not in app.log_text()
    finally:
        app.stop()
        db.dispose()


def _integrity(url: str) -> str:
    path = make_url(url).database
    assert path is not None
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
