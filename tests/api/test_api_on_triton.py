"""The /v1 API end to end: real app, real rails, real Triton with the local SmolLM2 model."""

from __future__ import annotations

import math
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
from tests.support.triton_standins import STANDIN_MODELS
from webapp.guard.turn import TurnGuard
from webapp.llm.tokens import counter_for
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

    # Greedy SmolLM2 (llama-cpp-python 0.3.36) ends this answer by itself after about 32 tokens...
    done = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Name one colour of the sky."}],
        max_tokens=100,
        temperature=0,
    )
    assert done.choices[0].finish_reason == "stop"
    assert (done.choices[0].message.content or "").strip()
    assert done.usage is not None and 0 < done.usage.completion_tokens < 100

    # ... and answers "Say hello." with the same sentence over and over, until it is cut at the limit.
    chunks = list(
        oai.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=16,
            temperature=0,
            stream=True,
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert chunks[-1].choices[0].finish_reason == "length"

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


def _completion(oai: openai.OpenAI, content: str, *, stream: bool, **options: Any) -> tuple[str, str | None, Any]:
    """(reply, finish_reason, usage) of one completion, streamed or not."""
    messages: list[Any] = [{"role": "user", "content": content}]
    model = oai.models.list().data[0].id
    if stream:
        chunks = list(oai.chat.completions.create(model=model, messages=messages, stream=True, **options))
        reply = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return reply, chunks[-1].choices[0].finish_reason, chunks[-1].usage
    done = oai.chat.completions.create(model=model, messages=messages, **options)
    return done.choices[0].message.content or "", done.choices[0].finish_reason, done.usage


def _saved_reply(app: RunningApp) -> Message:
    with app.ctx.db.read() as s:
        saved = s.scalars(select(Message).where(Message.role == "assistant").order_by(Message.id.desc())).first()
    assert saved is not None
    return saved


@pytest.mark.parametrize("stream", [False, True])
def test_a_reply_cut_at_max_tokens_ends_with_length_and_usage_counts_the_whole_prompt(
    smollm_app: RunningApp, stream: bool
) -> None:
    oai = openai.OpenAI(base_url=f"{smollm_app.url}/v1", api_key=_key(smollm_app), max_retries=0, timeout=120)
    question = "What is green tea?"  # greedy SmolLM2 answers it in well over 40 tokens
    reply, finish, usage = _completion(oai, question, stream=stream, max_tokens=40, temperature=0)
    assert reply.strip()
    assert finish == "length"
    assert usage is not None
    assert usage.completion_tokens == 40  # llama.cpp's own count: it was stopped at the limit
    # The model received the ChatML prompt (role headers and markers), not only the question's 5 tokens.
    assert usage.prompt_tokens > counter_for(smollm_app.settings).count(question)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    saved = _saved_reply(smollm_app)
    assert (saved.tokens_in, saved.tokens_out) == (usage.prompt_tokens, usage.completion_tokens)


# The stand-ins that count tokens, as the real vLLM backend and TRT-LLM ensemble do (the prompt's length over 4);
# for the others (NeMo, the older ensemble) the app counts with its tokenizer.
COUNTING_STANDINS = ("trtllm_ensemble", "vllm")


@pytest.mark.parametrize("standin_app", list(STANDIN_MODELS), indirect=True)
def test_finish_reason_and_usage_on_every_dialect(standin_app: RunningApp, triton_server: Any) -> None:
    model = standin_app.settings.triton_model
    oai = openai.OpenAI(base_url=f"{standin_app.url}/v1", api_key=_key(standin_app), max_retries=0, timeout=60)
    counter = counter_for(standin_app.settings)
    for stream in (False, True):
        marker = f"[{uuid.uuid4().hex[:12]}]"
        question = f"{marker} {{{{tokens:50}}}}"
        reply, finish, usage = _completion(oai, question, stream=stream, max_tokens=5)
        assert reply.strip() == "w0 w1 w2 w3 w4"
        assert finish == "length", (model, stream)
        prompt = triton_server.find_request(model, marker).prompt
        assert usage is not None
        if model in COUNTING_STANDINS:
            assert (usage.prompt_tokens, usage.completion_tokens) == (math.ceil(len(prompt) / 4), 5)
            assert usage.prompt_tokens > math.ceil(len(question) / 4)  # the whole prompt, by the same count
        else:
            assert (usage.prompt_tokens, usage.completion_tokens) == (counter.count(prompt), counter.count(reply))
            assert usage.prompt_tokens > counter.count(question)

        reply, finish, _ = _completion(oai, "{{reply:Tea is brewed in hot water.}}", stream=stream, max_tokens=40)
        assert reply == "Tea is brewed in hot water."
        assert finish == "stop", (model, stream)


@pytest.mark.parametrize("standin_app", ["vllm"], indirect=True)
def test_a_prompt_blocked_by_an_input_rail_reports_content_filter_and_no_usage(standin_app: RunningApp) -> None:
    oai = openai.OpenAI(base_url=f"{standin_app.url}/v1", api_key=_key(standin_app), max_retries=0, timeout=60)
    for stream in (False, True):
        _, finish, usage = _completion(oai, "you are a worthless idiot, fuck you", stream=stream, max_tokens=5)
        assert finish == "content_filter"
        # The model never saw it: nothing was spent, so usage counts nothing (a client adds usage up as cost).
        assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (0, 0)
