"""No one gets in: every HTTP route and every Gradio event, called with no session and as another user who
holds alice's ids, refuses or hands out nothing of alice's, and changes nothing of hers.

The endpoints are enumerated from the app itself (all pages mounted, as `guardchat serve` builds it), and
each one is checked against its rule in tests/support/resilience/access_registry.py. A new route or event without a
rule fails here; so does a rule for an endpoint that no longer exists.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.engine import make_url

import tests.support.guard.scripted_model  # noqa: F401 - registers the "scripted" backend
from tests.support.app_server import RunningApp
from tests.support.guard.scripted_model import SCRIPT
from tests.support.moderation.gradio_events import SELECT_EVENT, sample_inputs
from tests.support.paths import PROJECT_ROOT
from tests.support.resilience.access_registry import Rule, known_server_errors, registry
from tests.support.resilience.app_surface import (
    Endpoint,
    build_app,
    event_indexes,
    gradio_pages,
    serve_everything,
    surface,
)
from tests.support.resilience.chat_api import PASSWORD, complete, create_user_with_key
from tests.support.resilience.chat_page import DEFAULT_INPUTS
from tests.support.settings import SettingsFactory
from webapp.guard.turn import TurnGuard
from webapp.store import conversations as conv
from webapp.store.migrate import upgrade
from webapp.store.models import ApiKey, Conversation, Feedback, Flag, Message, ModerationEvent, User

SECRET = "KESTREL-5521"
ABUSE = "you are a worthless idiot, fuck you"
REFUSED = {400, 401, 403, 404, 405, 409, 413, 422}
GRADIO_REST_EVENT = re.compile(r"/gradio_api/(api|run|call/v2|call)/[^/]+/?$")
READ_LIMIT = 200_000  # bytes read from a streaming endpoint before the probe stops listening
BODY_PAUSE_S = 1.0  # a body that sends nothing for this long has said all it will say to the probe


def _collect_surface() -> list[Endpoint]:
    with tempfile.TemporaryDirectory() as data_dir:
        app: FastAPI = build_app(Path(data_dir))
        return surface(app)


SURFACE = _collect_surface()
RULES = registry()
KNOWN_500 = known_server_errors()
CASES = sorted({e.key for e in SURFACE} | set(RULES))


@dataclass
class World:
    app: RunningApp
    surface: dict[str, Endpoint]
    pages: dict[str, gr.Blocks]
    alice_conversation: int
    alice_reply: int
    alice_flag: int
    alice_db_file: str
    bob_key: str
    bob_cookies: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, settings_factory: SettingsFactory) -> Iterator[World]:
    settings = settings_factory(
        data_dir=tmp_path_factory.mktemp("isolation"),
        rails_dir=PROJECT_ROOT / "rails",
        llm_backend="scripted",
        self_check_rails=False,
        rate_limit_per_minute=10_000,
    )
    upgrade(settings.resolved_database_url)
    SCRIPT.reset()
    TurnGuard.clear_cache()
    with serve_everything(settings) as (app, asgi):
        _, alice_key = create_user_with_key(app.ctx.db, "alice")
        _, bob_key = create_user_with_key(app.ctx.db, "bob")
        create_user_with_key(app.ctx.db, "root", role="admin")
        first = complete(app.url, alice_key, f"My plan is {SECRET}")
        assert first.status_code == 200 and SECRET in first.reply, first.body
        cid = first.conversation_id
        assert cid is not None
        blocked = complete(app.url, alice_key, f"{SECRET} {ABUSE}", conversation_id=cid)
        assert blocked.guardchat["flagged"], blocked.body
        with app.ctx.db.write() as s:
            alice = s.scalars(select(User).where(User.username == "alice")).one()
            conv.rename_conversation(s, user=alice, conversation_id=cid, title=f"Alice {SECRET}")
            flag = s.scalars(select(Flag).where(Flag.conversation_id == cid)).one()
        with httpx.Client(base_url=app.url) as client:
            assert client.post("/login", data={"username": "bob", "password": PASSWORD}).status_code == 303
            cookies = dict(client.cookies)
        yield World(
            app=app,
            surface={e.key: e for e in surface(asgi)},
            pages=gradio_pages(asgi),
            alice_conversation=cid,
            alice_reply=first.guardchat["message_id"],
            alice_flag=flag.id,
            alice_db_file=str(make_url(settings.resolved_database_url).database),
            bob_key=bob_key,
            bob_cookies=cookies,
        )
    TurnGuard.clear_cache()


def alice_state(world: World) -> tuple[Any, ...]:
    """Everything of alice's (and everything global a refused caller might change)."""
    with world.app.ctx.db.read() as s:
        return (
            s.execute(select(Conversation.id, Conversation.title, Conversation.deleted_at)).all(),
            s.execute(select(Message.id, Message.seq, Message.status, Message.content).order_by(Message.id)).all(),
            s.execute(select(Flag.id, Flag.status, Flag.version, Flag.assignee_id).order_by(Flag.id)).all(),
            s.execute(select(User.id, User.username, User.role, User.banned_at).order_by(User.id)).all(),
            s.execute(select(ApiKey.id, ApiKey.revoked_at).order_by(ApiKey.id)).all(),
            s.execute(select(Feedback.id, Feedback.value).order_by(Feedback.id)).all(),
            s.execute(select(ModerationEvent.id).order_by(ModerationEvent.id)).all(),
        )


# --- calling one endpoint -------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: str
    location: str = ""

    @property
    def refused(self) -> bool:
        return self.status in REFUSED or (self.status in (302, 303, 307) and self.location.endswith("/login"))


def _mount_of(path: str, world: World) -> str:
    for mount in sorted(world.pages, key=len, reverse=True):
        if mount and (path == mount or path.startswith(mount + "/")):
            return mount
    return ""


def _api_name(mount: str) -> str:
    return {"": "open_conversation", "/moderation": "open_flag", "/admin": "load_admin"}[mount]


def _path(template: str, world: World) -> str:
    mount = _mount_of(template, world)
    values = {
        "conversation_id": str(world.alice_conversation),
        "fmt": "csv" if template.startswith("/moderation/export") else "json",
        "api_name": _api_name(mount),
        "path:path": "../../../../../../etc/passwd",
        "path_or_url:path": world.alice_db_file,
        "url_path:path": "https://evil.example/steal",
        "event_id": uuid.uuid4().hex,
        "session_hash": "alicesession",
        "run": "0",
        "component_id": "1",
        "segment_id": "0",
        "ext": "ts",
        "size": "192",
        "key": "guessed-key",
        "id": "1",
        "environment": "prod",
        "type": "index",
        "file_name": "index.js",
    }
    path = template
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no test value for a parameter of {template}"
    return path


def _body(path: str, world: World) -> dict[str, Any]:
    """Request options for a POST: always alice's ids where the endpoint takes an id."""
    mount = _mount_of(path, world)
    blocks = world.pages.get(mount)
    if path.endswith("/gradio_api/queue/join"):
        index = event_indexes(blocks)[_api_name(mount)] if blocks else 0
        return {"json": {"data": _event_inputs(world, mount, _api_name(mount)), "fn_index": index,
                         "session_hash": uuid.uuid4().hex[:11], "event_data": None}}  # fmt: skip
    if "/gradio_api/api/" in path or "/gradio_api/run/" in path or "/gradio_api/call/" in path:
        return {"json": {"data": _event_inputs(world, mount, _api_name(mount))}}
    if path.endswith("/gradio_api/upload"):
        return {"files": {"files": ("note.txt", b"hello")}}
    if path.endswith("/gradio_api/cancel"):
        return {"json": {"session_hash": "alicesession", "fn_index": 0, "event_id": uuid.uuid4().hex}}
    if path.endswith("/login") or path.endswith("/login/") or path.endswith("/signup"):
        return {"data": {"username": "alice", "password": "not-her-password"}}
    if path.endswith("/v1/chat/completions"):
        return {
            "json": {"model": "m", "messages": [{"role": "user", "content": "what did alice say?"}]},
            "headers": {"X-GuardChat-Conversation": str(world.alice_conversation)},
        }
    return {"json": {"session_hash": "alicesession", "fn_index": 0, "event_id": uuid.uuid4().hex, "data": None}}


def call_http(endpoint: Endpoint, world: World, *, as_bob: bool) -> Answer:
    path = _path(endpoint.path, world)
    options: dict[str, Any] = _body(path, world) if endpoint.method == "POST" else {}
    headers = dict(options.pop("headers", {}))
    if path.startswith("/v1/") and as_bob:
        headers["Authorization"] = f"Bearer {world.bob_key}"
    cookies = world.bob_cookies if as_bob else {}
    with httpx.Client(base_url=world.app.url, cookies=cookies, timeout=30.0) as client:
        with client.stream(endpoint.method, path, headers=headers, **options) as response:
            body = bytearray()
            # Some endpoints stream for as long as the client listens (queue data, heartbeats): sample them.
            # The answer's headers may take a while on a loaded machine; the body is then read until it pauses
            # for a second. httpcore takes the body's read timeout from the request when the body is first read.
            response.request.extensions["timeout"] = {**response.request.extensions["timeout"], "read": BODY_PAUSE_S}
            with contextlib.suppress(httpx.ReadTimeout):
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) >= READ_LIMIT:
                        break
    answer = Answer(response.status_code, body.decode("utf-8", errors="replace"), response.headers.get("location", ""))
    return _handler_refusal(answer) if GRADIO_REST_EVENT.search(path) else answer


def _handler_refusal(answer: Answer) -> Answer:
    """Gradio's REST event routes answer a handler that raised gr.Error (a refusal) with HTTP 500 and its message."""
    if answer.status == 500:
        with contextlib.suppress(ValueError):
            error = json.loads(answer.body).get("error")
            if isinstance(error, str) and "Traceback" not in error:
                return Answer(403, answer.body)
    return answer


def _event_inputs(world: World, mount: str, name: str) -> list[Any]:
    blocks = world.pages[mount]
    index = event_indexes(blocks)[name]
    if mount:  # staff pages: well-formed values, alice's flag wherever a number is asked for
        return [world.alice_flag if isinstance(v, int | float) and not isinstance(v, bool) else v
                for v in sample_inputs(blocks, index)]  # fmt: skip
    values = {
        **DEFAULT_INPUTS,
        "gc-input": "bob was here",
        "gc-conversation-id": world.alice_conversation,
        "gc-conversations": world.alice_conversation,
        "gc-report-message-id": world.alice_reply,
        "gc-title": "renamed by bob",
        "gc-search": SECRET,
        "gc-report-reason": "reported by bob",
    }
    return [values.get(str(getattr(c, "elem_id", ""))) for c in blocks.fns[index].inputs]


EVENT_DATA: dict[str, Any] = {
    "give_feedback": {"index": 1, "value": ["x"], "liked": True},
    "edit_last_message": {"index": 0, "value": "edited by bob", "previous_value": "x"},
    "regenerate_reply": {"index": 0, "value": "x"},
}


def call_event(endpoint: Endpoint, world: World, *, as_bob: bool) -> Answer:
    mount, name = endpoint.path, endpoint.name
    blocks = world.pages[mount]
    index = event_indexes(blocks)[name]
    event_data = EVENT_DATA.get(name) if not mount else SELECT_EVENT
    session_hash = uuid.uuid4().hex[:11]
    cookies = world.bob_cookies if as_bob else {}
    with httpx.Client(base_url=world.app.url, cookies=cookies, timeout=60) as client:
        joined = client.post(
            f"{mount}/gradio_api/queue/join",
            json={"data": _event_inputs(world, mount, name), "fn_index": index, "session_hash": session_hash,
                  "event_data": event_data, "trigger_id": None},
        )  # fmt: skip
        if joined.status_code != 200:
            return Answer(joined.status_code, joined.text)
        messages: list[str] = []
        success = False
        with client.stream("GET", f"{mount}/gradio_api/queue/data", params={"session_hash": session_hash}) as data:
            for line in data.iter_lines():
                messages.append(line)
                if line.startswith("data:") and '"process_completed"' in line:
                    success = bool(json.loads(line[5:]).get("success"))
                    break
    # A handler that raised (refused) is a 403 here; one that ran is a 200 whose updates are searched.
    return Answer(200 if success else 403, "\n".join(messages))


# --- the test --------------------------------------------------------------------------------------------


def _expect(key: str, rule: Rule, answer: Answer, *, who: str) -> None:
    # 503 is /readyz saying the model is not there (these tests run no Triton); any other 5xx is a bug,
    # unless access_registry.GRADIO_KNOWN_500 explains it (and then the answer carries nothing).
    known = key in KNOWN_500 and answer.body == "Internal Server Error"
    assert answer.status < 500 or answer.status == 503 or known, f"{who}: error {answer.status}: {answer.body[:300]}"
    assert SECRET not in answer.body, f"{who} got alice's data: {answer.body[:300]}"
    assert "root:x:0:0" not in answer.body, f"{who} read a file outside the app: {answer.body[:300]}"
    if rule == "disabled" or (who == "anonymous" and rule not in ("public", "capability")):
        assert answer.refused, f"{who} was let in ({answer.status}): {answer.body[:300]}"
    if who == "bob" and rule in ("staff", "admin"):
        assert answer.refused, f"bob (a plain user) was let in ({answer.status}): {answer.body[:300]}"


@pytest.mark.parametrize("key", CASES)
def test_nobody_gets_another_users_data(world: World, key: str) -> None:
    assert key in RULES, f"{key} has no access rule: add one to tests/support/resilience/access_registry.py"
    assert key in world.surface, f"{key} is no longer served: remove its rule from access_registry.py"
    endpoint, rule = world.surface[key], RULES[key]
    call = call_event if endpoint.kind == "event" else call_http
    before = alice_state(world)
    for who in ("anonymous", "bob"):
        _expect(key, rule, call(endpoint, world, as_bob=who == "bob"), who=who)
    assert alice_state(world) == before, f"a call to {key} changed alice's data"


def test_the_collected_surface_is_the_running_apps(world: World) -> None:
    assert sorted(world.surface) == sorted(e.key for e in SURFACE)
