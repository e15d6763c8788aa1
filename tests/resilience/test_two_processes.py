"""Two GuardChat processes (`guardchat serve`) on one PostgreSQL database, as behind a load balancer.

A conversation moves between them, a session cookie from one works on the other, and what must hold for
everyone holds across both: a ban, a role change, the rate limit and the concurrent-stream limit. Last, one
process is SIGKILLed mid-stream while the other is streaming too: the restarted process recovers its own
dead reply and leaves the live peer's stream alone (the PostgreSQL run of the crash scenario).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select

from tests.support.resilience.app_process import AppProcess, guardchat_env, start_all
from tests.support.resilience.chat_api import PASSWORD, complete, create_user_with_key, stream
from tests.support.resilience.crash import (
    LONG_REPLY,
    LONG_REPLY_TEXT,
    app_settings,
    commit_turns_then_crash_mid_stream,
    rows,
    wait_for,
)
from tests.support.settings import SettingsFactory
from tests.support.triton_fixtures import TritonServer
from webapp.services.accounts import ensure_initial_admin
from webapp.store import users
from webapp.store.engine import Database
from webapp.store.models import Conversation, Message

pytestmark = pytest.mark.integration

RATE_LIMIT = 5
# The peer's reply must outlast the other process's restart on a slow machine: 500 tokens, 0.6 s each.
VERY_LONG_REPLY = "Tell me an endless story. {{tokens:500}}{{delay_ms:600}}"


@dataclass
class Pair:
    a: AppProcess
    b: AppProcess
    db: Database
    url: str


@pytest.fixture(scope="module")
def pair(triton_server: TritonServer, module_pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    settings = app_settings(
        triton_server,
        module_pg_url,
        rate_limit_per_minute=RATE_LIMIT,
        max_concurrent_streams=1,
        output_chunk_size=8,
        output_context_size=2,
        stream_save_interval_s=0.2,
    )
    root = tmp_path_factory.mktemp("two-processes")
    a, b = AppProcess(root / "a", settings), AppProcess(root / "b", settings)
    db = Database(module_pg_url)
    start_all(a, b)
    try:
        yield Pair(a, b, db, module_pg_url)
    finally:
        a.stop()
        b.stop()
        for app in (a, b):
            assert "database is locked" not in app.log_text()
        db.dispose()


@contextmanager
def signed_in(app: AppProcess, username: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.url, timeout=30) as client:
        response = client.post("/login", data={"username": username, "password": PASSWORD})
        assert response.status_code == 303 and response.headers["location"] == "/", response.text
        yield client


def on(app: AppProcess, client: httpx.Client) -> httpx.Client:
    """The same browser (cookies) talking to another process, as a load balancer without affinity would."""
    return httpx.Client(base_url=app.url, cookies=client.cookies, timeout=30)


def guardchat_cli(pair: Pair, *args: str) -> None:
    env = guardchat_env(database_url=pair.url, data_dir=pair.a.data_dir)
    done = subprocess.run(
        [sys.executable, "-m", "webapp.cli", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_both_processes_started_on_the_fresh_database(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, settings_factory: SettingsFactory
) -> None:
    """They raced to create the first account: one did, the other noticed and started anyway."""
    with pair.db.read() as s:
        assert [u.username for u in users.list_users(s)] == ["admin"]
    # The losing side of that race, replayed: it counted no users, then the insert collided.
    monkeypatch.setattr(users, "count_users", lambda session: 0)
    assert ensure_initial_admin(pair.db, settings_factory(data_dir=pair.a.data_dir)) is None


def test_a_conversation_started_on_one_process_continues_on_the_other(pair: Pair, triton_server: TritonServer) -> None:
    _, key = create_user_with_key(pair.db, "alice")
    first = complete(pair.a.url, key, "On A: remember TULIP. {{reply:TULIP noted on A.}}")
    assert first.status_code == 200 and first.guardchat["status"] == "complete", first.body
    cid = first.conversation_id
    second = complete(pair.b.url, key, "On B: what flower? {{reply:TULIP, said B.}}", conversation_id=cid)
    assert second.status_code == 200 and second.guardchat["status"] == "complete", second.body
    assert second.conversation_id == cid
    assert "TULIP noted on A." in triton_server.find_request("nemo2", "On B: what flower?").prompt

    # A session signed in on A is valid on B, and B shows the whole conversation.
    with signed_in(pair.a, "alice") as browser_a, on(pair.b, browser_a) as browser_b:
        exported = browser_b.get(f"/export/{cid}.json")
    assert exported.status_code == 200
    assert [m["content"] for m in exported.json()["messages"]] == [
        "On A: remember TULIP. {{reply:TULIP noted on A.}}",
        "TULIP noted on A.",
        "On B: what flower? {{reply:TULIP, said B.}}",
        "TULIP, said B.",
    ]


def test_the_rate_limit_counts_turns_on_both_processes(pair: Pair) -> None:
    _, key = create_user_with_key(pair.db, "rita")
    for turn in range(RATE_LIMIT):
        app = (pair.a, pair.b)[turn % 2]
        done = complete(app.url, key, f"turn {turn} {{{{reply:ok {turn}}}}}")
        assert done.status_code == 200, done.body
    for app in (pair.a, pair.b):
        refused = complete(app.url, key, "one more {{reply:no}}")
        assert refused.status_code == 429 and refused.error["code"] == "rate_limit_per_minute", refused.body


def test_the_concurrent_stream_limit_counts_streams_on_both_processes(pair: Pair) -> None:
    _, key = create_user_with_key(pair.db, "sam")
    with stream(pair.a.url, key, LONG_REPLY) as running:
        running.read_until(10)
        refused = complete(pair.b.url, key, "a second stream on B {{reply:no}}")
        assert refused.status_code == 429 and refused.error["code"] == "max_concurrent_streams", refused.body


def test_a_ban_on_one_process_holds_on_the_other(pair: Pair) -> None:
    _, key = create_user_with_key(pair.db, "bob")
    assert complete(pair.b.url, key, "before the ban {{reply:hi bob}}").status_code == 200
    with signed_in(pair.b, "bob") as browser_b, on(pair.a, browser_b) as browser_a:
        assert browser_a.get("/config").status_code == 200  # the chat page's config: signed in on A too
        guardchat_cli(pair, "users", "ban", "bob")
        for app in (pair.a, pair.b):
            refused = complete(app.url, key, "after the ban {{reply:no}}")
            assert refused.status_code == 403 and refused.error["code"] == "account_banned", refused.body
        for browser in (browser_a, browser_b):
            assert browser.get("/config").status_code == 401
            page = browser.get("/", headers={"accept": "text/html"})
            assert page.status_code == 303 and page.headers["location"] == "/login"


def test_a_role_change_on_one_process_holds_on_the_other(pair: Pair) -> None:
    create_user_with_key(pair.db, "carol")
    with signed_in(pair.a, "carol") as browser_a, on(pair.b, browser_a) as browser_b:
        page = {"accept": "text/html"}
        assert [b.get("/moderation/", headers=page).status_code for b in (browser_a, browser_b)] == [403, 403]
        guardchat_cli(pair, "users", "set-role", "carol", "moderator")
        assert [b.get("/moderation/", headers=page).status_code for b in (browser_a, browser_b)] == [200, 200]
        guardchat_cli(pair, "users", "set-role", "carol", "user")
        assert [b.get("/moderation/", headers=page).status_code for b in (browser_a, browser_b)] == [403, 403]


def test_sigkill_mid_stream_on_postgresql_spares_the_live_peer(pair: Pair, triton_server: TritonServer) -> None:
    _, alice_key = create_user_with_key(pair.db, "kim")
    _, peer_key = create_user_with_key(pair.db, "pat")
    with stream(pair.b.url, peer_key, VERY_LONG_REPLY) as peer:
        peer_reply = _streaming_reply(pair.db, "pat")
        crash = commit_turns_then_crash_mid_stream(pair.a, pair.db, alice_key)
        pair.a.start()  # start-up recovery runs here, while B is still streaming

        recovered = rows(pair.db, crash.conversation_id)
        assert recovered[: len(crash.committed)] == crash.committed
        reply = next(r for r in recovered if r[0] == crash.reply_id)
        assert reply[3] == "interrupted" and reply[4] and LONG_REPLY_TEXT.startswith(reply[4])
        # B's reply is still live: A's recovery did not touch it, and B keeps sending it.
        assert _status(pair.db, peer_reply) == "streaming"
        peer.read_until(8)

    # The conversation continues on the restarted process and on the other one.
    for app, question in ((pair.a, "Word on A?"), (pair.b, "Word on B?")):
        more = complete(app.url, alice_key, f"{question} {{{{reply:ORCHID}}}}", conversation_id=crash.conversation_id)
        assert more.status_code == 200 and more.guardchat["status"] == "complete", more.body
        assert "Remember the word ORCHID" in triton_server.find_request("nemo2", question).prompt
    # B's own stream, closed by its client, was saved by B as interrupted.
    wait_for(lambda: _status(pair.db, peer_reply) == "interrupted", "the peer's reply to be interrupted")


def _streaming_reply(db: Database, username: str) -> int:
    def find() -> int | None:
        with db.read() as session:
            user = users.require_user_by_name(session, username=username)
            owned = select(Conversation.id).where(Conversation.owner_id == user.id).scalar_subquery()
            return session.scalar(
                select(Message.id).where(Message.conversation_id.in_(owned), Message.status == "streaming")
            )

    found = wait_for(find, f"{username}'s streaming reply")
    assert isinstance(found, int)
    return found


def _status(db: Database, message_id: int) -> str:
    with db.read() as session:
        message = session.get(Message, message_id)
        assert message is not None
        return message.status
