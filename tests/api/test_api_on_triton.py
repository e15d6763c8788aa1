"""The /v1 API end to end: real app, real rails, real Triton with the local SmolLM2 model."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from tests.support.app_server import RunningApp, run_app
from tests.support.settings import make_settings
from webapp.guard.turn import TurnGuard
from webapp.settings import Settings
from webapp.store import api_keys, users
from webapp.store.migrate import upgrade
from webapp.store.models import Message

pytestmark = pytest.mark.integration


def _settings(monkeypatch: pytest.MonkeyPatch, triton_url: str, model: str) -> Settings:
    monkeypatch.setenv("GUARDCHAT_TRITON_URL", triton_url)
    monkeypatch.setenv("GUARDCHAT_TRITON_MODEL", model)
    monkeypatch.setenv("GUARDCHAT_PROMPT_TEMPLATE", "chatml")
    monkeypatch.setenv("GUARDCHAT_TRITON_CONNECT_TIMEOUT_S", "2")
    settings = make_settings()
    upgrade(settings.resolved_database_url)
    TurnGuard.clear_cache()
    return settings


def _key(app: RunningApp) -> str:
    with app.ctx.db.write() as s:
        user = users.create_user(s, username="alice", password="password123")
        return api_keys.create_api_key(s, user=user)[1]


@pytest.fixture
def smollm_app(monkeypatch: pytest.MonkeyPatch, triton_server: Any) -> Iterator[RunningApp]:
    settings = _settings(monkeypatch, triton_server.grpc_url, "smollm2_stream")
    with run_app(settings, with_ui=False) as app:
        yield app
    TurnGuard.clear_cache()


def test_openai_client_gets_completion_stream_and_content_filter(smollm_app: RunningApp) -> None:
    oai = openai.OpenAI(base_url=f"{smollm_app.url}/v1", api_key=_key(smollm_app), max_retries=0, timeout=120)
    model = oai.models.list().data[0].id
    assert model == "smollm2_stream"

    done = oai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Name one colour of the sky."}], max_tokens=24
    )
    assert done.choices[0].finish_reason == "stop"
    assert (done.choices[0].message.content or "").strip()
    assert done.usage is not None and 0 < done.usage.completion_tokens <= 40

    chunks = list(
        oai.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert chunks[-1].choices[0].finish_reason == "stop"

    blocked = oai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "you are a worthless idiot, fuck you"}]
    )
    assert blocked.choices[0].finish_reason == "content_filter"
    assert (blocked.model_extra or {})["guardchat"]["stage"] == "input"


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


def test_readyz_follows_triton_down_and_back(monkeypatch: pytest.MonkeyPatch, start_triton: Any) -> None:
    triton = start_triton(models=("synthetic_bench",))
    settings = _settings(monkeypatch, triton.grpc_url, "synthetic_bench")
    with run_app(settings, with_ui=False) as app:
        assert httpx.get(f"{app.url}/readyz", timeout=10).status_code == 200
        triton.stop()
        assert _wait_for(lambda: httpx.get(f"{app.url}/readyz", timeout=10).status_code == 503)
        body = httpx.get(f"{app.url}/readyz", timeout=10).json()
        assert body["database"] == "ok" and "synthetic_bench" in body["model"]
        triton.start()
        assert _wait_for(lambda: httpx.get(f"{app.url}/readyz", timeout=10).status_code == 200)
    TurnGuard.clear_cache()


@pytest.fixture
def standin_app(
    monkeypatch: pytest.MonkeyPatch, triton_server: Any, request: pytest.FixtureRequest
) -> Iterator[RunningApp]:
    # These tests are about the model call. The stand-ins answer a self-check prompt with the directive's
    # reply (not "no"), and the learned request rail reads the directive syntax ("{{reply:...}}") as a template
    # injection. rails/eval measures those rails, so here they are switched off.
    monkeypatch.setenv("GUARDCHAT_SELF_CHECK_RAILS", "false")
    monkeypatch.setenv("GUARDCHAT_HARMFUL_REQUEST_THRESHOLD", "1.0")
    monkeypatch.setenv("GUARDCHAT_JAILBREAK_THRESHOLD", "1.0")
    settings = _settings(monkeypatch, triton_server.grpc_url, request.param)
    with run_app(settings, with_ui=False) as app:
        yield app
    TurnGuard.clear_cache()


@pytest.mark.parametrize("standin_app", ["trtllm_ensemble", "vllm"], indirect=True)
@pytest.mark.parametrize("stream", [False, True])
def test_a_clients_stop_string_stops_the_model_and_cuts_the_saved_reply(
    standin_app: RunningApp, triton_server: Any, stream: bool
) -> None:
    model = standin_app.settings.triton_model
    marker = f"[{uuid.uuid4().hex[:12]}]"
    prompt = f"{marker} {{{{reply:Tea is brewed in hot water. END Then it is poured into cups for everyone.}}}}"
    oai = openai.OpenAI(base_url=f"{standin_app.url}/v1", api_key=_key(standin_app), max_retries=0, timeout=60)
    messages: list[Any] = [{"role": "user", "content": prompt}]
    if stream:
        chunks = list(oai.chat.completions.create(model=model, messages=messages, stop=["END"], stream=True))
        reply = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = chunks[-1].choices[0].finish_reason
    else:
        done = oai.chat.completions.create(model=model, messages=messages, stop=["END"])
        reply, finish = done.choices[0].message.content or "", done.choices[0].finish_reason
    assert reply.strip() == "Tea is brewed in hot water."
    assert finish == "stop"
    # The model was told: it stopped at the stop string instead of generating the rest of the reply.
    record = triton_server.find_request(model, marker, until=lambda r: r.finished)
    assert record.stop_reason == "stop_word", record
    # What was saved is what the client got, not the model's whole reply.
    with standin_app.ctx.db.read() as s:
        saved = s.scalars(select(Message).where(Message.role == "assistant").order_by(Message.id.desc())).first()
    assert saved is not None and saved.content.strip() == "Tea is brewed in hot water."
