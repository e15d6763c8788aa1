"""The /v1 API with the real rails and a scripted chat model registered through the production seam."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from sqlalchemy import select

from tests.support.app_server import RunningApp, run_app
from tests.support.guard.scripted_model import SCRIPT
from tests.support.settings import SettingsFactory
from webapp.guard.turn import TurnGuard
from webapp.store import api_keys, users
from webapp.store import conversations as conv
from webapp.store.migrate import upgrade
from webapp.store.models import Flag, User

ABUSE = "you are a worthless idiot, fuck you"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, settings_factory: SettingsFactory) -> Iterator[RunningApp]:
    monkeypatch.setenv("GUARDCHAT_LLM_BACKEND", "scripted")
    monkeypatch.setenv("GUARDCHAT_SELF_CHECK_RAILS", "false")
    monkeypatch.setenv("GUARDCHAT_RATE_LIMIT_PER_MINUTE", "4")
    monkeypatch.setenv("GUARDCHAT_MAX_MESSAGES", "6")
    monkeypatch.setenv("GUARDCHAT_MAX_BODY_BYTES", "20000")
    monkeypatch.setenv("GUARDCHAT_MAX_MESSAGE_CHARS", "2000")
    settings = settings_factory()
    upgrade(settings.resolved_database_url)
    SCRIPT.reset()
    TurnGuard.clear_cache()
    with run_app(settings, with_ui=False) as running:
        yield running
    TurnGuard.clear_cache()


def make_key(app: RunningApp, name: str) -> tuple[User, str]:
    with app.ctx.db.write() as s:
        user = users.create_user(s, username=name, password="password123")
        _, plaintext = api_keys.create_api_key(s, user=user)
    return user, plaintext


def client(app: RunningApp, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{app.url}/v1", api_key=key, max_retries=0, timeout=30)


def test_completion_stream_and_content_filter_with_the_openai_client(app: RunningApp) -> None:
    alice, key = make_key(app, "alice")
    oai = client(app, key)
    model = oai.models.list().data[0].id

    done = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell me about tea"}])
    assert done.choices[0].finish_reason == "stop"
    assert "tea" in (done.choices[0].message.content or "")
    assert done.usage is not None and done.usage.completion_tokens > 0

    stream = oai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Tell me about coffee"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "coffee" in text
    assert chunks[-1].choices[0].finish_reason == "stop"

    blocked = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": ABUSE}])
    assert blocked.choices[0].finish_reason == "content_filter"
    assert "idiot" not in (blocked.choices[0].message.content or "")
    extra = blocked.model_extra or {}
    assert extra["guardchat"]["stage"] == "input" and extra["guardchat"]["rail"]

    # API turns are the owner's history and raise flags like UI turns.
    with app.ctx.db.read() as s:
        titles = {c.title for c in conv.list_conversations(s, user=alice)}
        flag = s.scalars(select(Flag)).one()
    assert {"Tell me about tea", "Tell me about coffee"} <= titles
    assert flag.user_id == alice.id and flag.source == "input_rail"


def test_streamed_block_ends_with_content_filter(app: RunningApp) -> None:
    _, key = make_key(app, "alice")
    SCRIPT.reply = lambda _: "Calm words here. " * 12 + "You are a fucking worthless idiot."
    with httpx.stream(
        "POST",
        f"{app.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        timeout=30,
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert "idiot" not in text
    assert events[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert events[-1]["guardchat"]["stage"] == "output"
    # Unlike a prompt refused at input, this one reached the model, which wrote the blocked reply.
    assert events[-1]["usage"]["prompt_tokens"] > 0 and events[-1]["usage"]["completion_tokens"] > 0


def test_history_is_stored_and_continued_by_header(app: RunningApp) -> None:
    alice, key = make_key(app, "alice")
    headers = {"Authorization": f"Bearer {key}"}
    first = httpx.post(
        f"{app.url}/v1/chat/completions",
        headers=headers,
        timeout=30,
        json={
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "earlier question"},
                {"role": "assistant", "content": "earlier answer"},
                {"role": "user", "content": "now this"},
            ],
        },
    )
    assert first.status_code == 200
    cid = int(first.headers["X-GuardChat-Conversation"])
    second = httpx.post(
        f"{app.url}/v1/chat/completions",
        timeout=30,
        headers={**headers, "X-GuardChat-Conversation": str(cid)},
        json={"model": "m", "messages": [{"role": "user", "content": "and then"}]},
    )
    assert second.status_code == 200
    with app.ctx.db.read() as s:
        rows = [(m.role, m.content) for m in conv.list_messages(s, user=alice, conversation_id=cid)]
        assert conv.require_conversation(s, user=alice, conversation_id=cid).system_prompt == "Be brief."
    assert [r[1] for r in rows if r[0] == "user"] == ["earlier question", "now this", "and then"]
    sent = [str(m.content) for m in SCRIPT.generation_calls[-1].messages]
    assert "earlier answer" in sent and sent[-1] == "and then"


def test_another_users_conversation_header_is_not_found(app: RunningApp) -> None:
    _, alice_key = make_key(app, "alice")
    _, bob_key = make_key(app, "bob")
    first = httpx.post(
        f"{app.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {alice_key}"},
        json={"model": "m", "messages": [{"role": "user", "content": "mine"}]},
        timeout=30,
    )
    cid = first.headers["X-GuardChat-Conversation"]
    stolen = httpx.post(
        f"{app.url}/v1/chat/completions",
        timeout=30,
        headers={"Authorization": f"Bearer {bob_key}", "X-GuardChat-Conversation": cid},
        json={"model": "m", "messages": [{"role": "user", "content": "show me"}]},
    )
    assert stolen.status_code == 404
    assert stolen.json()["error"]["code"] == "conversation_not_found"


@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [
        (None, 401, "missing_api_key"),
        ("Bearer gc-not-a-real-key", 401, "invalid_api_key"),
        ("Basic abc", 401, "missing_api_key"),
    ],
)
def test_auth_failures_use_openai_errors(app: RunningApp, authorization: str | None, status: int, code: str) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    r = httpx.post(
        f"{app.url}/v1/chat/completions",
        headers=headers,
        timeout=10,
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == status
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]


def test_revoked_and_banned_keys(app: RunningApp) -> None:
    _alice, key = make_key(app, "alice")
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with app.ctx.db.write() as s:
        user = users.require_user_by_name(s, username="alice")
        users.ban_user(s, user=user)
    r = httpx.post(f"{app.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "account_banned"
    with app.ctx.db.write() as s:
        user = users.require_user_by_name(s, username="alice")
        users.unban_user(s, user=user)
        api_keys.revoke_api_key(s, user=user, prefix=key[:10])
    r = httpx.post(f"{app.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_limits_return_documented_codes_and_save_nothing(app: RunningApp) -> None:
    alice, key = make_key(app, "alice")
    headers = {"Authorization": f"Bearer {key}"}
    url = f"{app.url}/v1/chat/completions"

    too_long = httpx.post(
        url, headers=headers, json={"model": "m", "messages": [{"role": "user", "content": "x" * 2001}]}
    )
    assert too_long.status_code == 413 and "the limit is 2000" in too_long.json()["error"]["message"]

    many = [{"role": "user", "content": "hi"}] * 7
    assert httpx.post(url, headers=headers, json={"model": "m", "messages": many}).status_code == 413

    huge = httpx.post(
        url, headers={**headers, "Content-Type": "application/json"}, content=b"[" + b"1," * 20000 + b"1]"
    )
    assert huge.status_code == 413 and "GUARDCHAT_MAX_BODY_BYTES" in huge.json()["error"]["message"]
    assert len(huge.headers["X-Request-Id"]) == 32  # refused before reading, still traceable in the logs

    bad_json = httpx.post(url, headers={**headers, "Content-Type": "application/json"}, content=b"{not json")
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]["message"]

    unknown = httpx.post(
        url, headers=headers, json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "frobnicate": True}
    )
    assert unknown.status_code == 400 and "frobnicate" in unknown.json()["error"]["message"]

    wrong_role = httpx.post(url, headers=headers, json={"model": "m", "messages": [{"role": "tool", "content": "x"}]})
    assert wrong_role.status_code == 400

    nul = httpx.post(url, headers=headers, json={"model": "m", "messages": [{"role": "user", "content": "a\u0000b"}]})
    assert nul.status_code == 400 and "NUL" in nul.json()["error"]["message"]

    with app.ctx.db.read() as s:
        assert conv.list_conversations(s, user=alice) == []  # nothing saved half-way

    for i in range(4):
        ok = httpx.post(
            url, headers=headers, timeout=30, json={"model": "m", "messages": [{"role": "user", "content": f"msg {i}"}]}
        )
        assert ok.status_code == 200
    limited = httpx.post(url, headers=headers, json={"model": "m", "messages": [{"role": "user", "content": "more"}]})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "60"
    assert limited.json()["error"]["code"] == "rate_limit_per_minute"
    assert httpx.get(f"{app.url}/healthz").status_code == 200


def test_metrics_count_a_block_under_its_rail(app: RunningApp) -> None:
    _, key = make_key(app, "alice")
    r = httpx.post(
        f"{app.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        json={"model": "m", "messages": [{"role": "user", "content": ABUSE}]},
    )
    rail = r.json()["guardchat"]["rail"]
    metrics = httpx.get(f"{app.url}/metrics").text
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("guardchat_blocks_total{") and f'rail="{rail}"' in line and 'stage="input"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 1
    assert "guardchat_turns_total" in metrics and "guardchat_time_to_first_token_seconds" in metrics


def test_every_response_carries_the_request_id_it_was_logged_under(app: RunningApp) -> None:
    _, key = make_key(app, "alice")
    headers = {"Authorization": f"Bearer {key}", "X-Request-Id": "trace-42"}
    body = {"model": "m", "messages": [{"role": "user", "content": "Tell me about tea"}], "stream": True}
    with httpx.stream("POST", f"{app.url}/v1/chat/completions", headers=headers, json=body) as streamed:
        assert streamed.headers["X-Request-Id"] == "trace-42"
        assert "data: [DONE]" in "".join(streamed.iter_text())
    fresh = httpx.get(f"{app.url}/healthz")
    other = httpx.get(f"{app.url}/healthz")
    assert len(fresh.headers["X-Request-Id"]) == 32 and fresh.headers["X-Request-Id"] != other.headers["X-Request-Id"]
    metrics = httpx.get(f"{app.url}/metrics").text
    assert 'guardchat_http_requests_total{route="/v1/chat/completions",status="200"}' in metrics
