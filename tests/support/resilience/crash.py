"""The crash scenario shared by SQLite and PostgreSQL: commit some turns, SIGKILL the app mid-stream, restart it.

The model is the ``nemo2`` stand-in on the session's real Triton (tests/support/triton_standins.py): its reply is
scripted by directives in the prompt, so "a long reply" is exactly N tokens with a known delay each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from tests.support.resilience.app_process import AppProcess
from tests.support.resilience.chat_api import complete, stream
from tests.support.triton_fixtures import TritonServer
from webapp.store.engine import Database
from webapp.store.models import Message

MODEL = "nemo2"
# 400 tokens at 25 ms: ten seconds of streaming, so the kill lands mid-reply whatever the machine's speed.
LONG_REPLY = "Tell me a long story. {{tokens:400}}{{delay_ms:25}}"
LONG_REPLY_TEXT = "".join(f"w{i} " for i in range(400))  # what the stand-in streams for it
SETTLE_TIMEOUT_S = 120.0


def app_settings(triton: TritonServer, database_url: str, **extra: object) -> dict[str, object]:
    return {
        "database_url": database_url,
        "triton_url": triton.grpc_url,
        "triton_model": MODEL,
        "prompt_template": "nemo-chat",
        "self_check_rails": "false",
        # The scripted directives ("{{reply:...}}", "{{tokens:400}}" -> "w0 w1 ...") are not text anyone writes,
        # and the learned rails refuse some of them (a false refusal on out-of-distribution text, listed in
        # rails/eval/README.md); these tests are about crashes, so the learned rails are off (threshold 1).
        "harmful_request_threshold": 1.0,
        "jailbreak_threshold": 1.0,
        "harmful_reply_threshold": 1.0,
        **extra,
    }


Row = tuple[int, int, str, str, str]  # id, seq, role, status, content


def rows(db: Database, conversation_id: int) -> list[Row]:
    with db.read() as session:
        found = session.execute(
            select(Message.id, Message.seq, Message.role, Message.status, Message.content)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.seq)
        ).all()
    return [tuple(row) for row in found]  # type: ignore[misc]


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = SETTLE_TIMEOUT_S) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Crash:
    conversation_id: int
    committed: list[Row]  # every message of the conversation committed before the kill
    shown: str  # the reply text the client had received when the app died
    reply_id: int  # the assistant message that was streaming


def commit_turns_then_crash_mid_stream(app: AppProcess, db: Database, key: str) -> Crash:
    """Two finished turns, then a long streamed reply during which the app process is SIGKILLed."""
    first = complete(app.url, key, "Remember the word ORCHID. {{reply:I will remember ORCHID.}}")
    assert first.status_code == 200 and first.guardchat["status"] == "complete", first.body
    cid = first.conversation_id
    assert cid is not None
    second = complete(app.url, key, "And the number 42? {{reply:Noted: 42.}}", conversation_id=cid)
    assert second.status_code == 200 and second.guardchat["status"] == "complete", second.body
    committed = rows(db, cid)
    assert [(r[2], r[3]) for r in committed] == [("user", "complete"), ("assistant", "complete")] * 2

    with stream(app.url, key, LONG_REPLY, conversation_id=cid) as reply:
        reply.read_until(40)  # several checked chunks have reached the user
        streaming = [r for r in rows(db, cid) if r[3] == "streaming"]
        assert len(streaming) == 1, rows(db, cid)
        # The shown text is saved as it streams: wait until the database holds some of it, then crash.
        wait_for(lambda: [r for r in rows(db, cid) if r[0] == streaming[0][0] and r[4]], "a saved partial reply")
        app.kill()
        shown = reply.text
    return Crash(cid, committed, shown, streaming[0][0])
