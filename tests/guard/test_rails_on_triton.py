"""The rails against the real local Triton server (SmolLM2 via pytriton), through the production backend."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.guard.scripted_model import scripted_settings
from webapp.guard.turn import Delta, InputPassed, TurnFinished, TurnGuard
from webapp.llm.params import GenerationParams
from webapp.llm.templates import ChatTurn

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def triton_guard(triton_server: Any) -> TurnGuard:
    # Self check off: SmolLM2-135M is a stand-in model, not a judge; the offline rails decide here.
    settings = scripted_settings(
        llm_backend="triton",
        triton_url=triton_server.grpc_url,
        triton_protocol="grpc",
        triton_model="smollm2_stream",
        prompt_template="chatml",
        self_check_rails=False,
        output_chunk_size=16,
        output_context_size=4,
    )
    return TurnGuard.load(settings)


@pytest.fixture
def model_calls(triton_guard: TurnGuard, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call into the Triton chat model class, counted on the way to the server."""
    calls: list[str] = []
    model_class = type(triton_guard._loaded.chat_model)
    real_stream, real_text, real_generate = model_class._astream, model_class.stream_text, model_class._agenerate

    def counting_stream(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("stream")
        return real_stream(self, *args, **kwargs)

    def counting_text(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("stream")  # the main generation's streaming path
        return real_text(self, *args, **kwargs)

    async def counting_generate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("generate")
        return await real_generate(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "_astream", counting_stream)
    monkeypatch.setattr(model_class, "stream_text", counting_text)
    monkeypatch.setattr(model_class, "_agenerate", counting_generate)
    return calls


async def test_benign_turn_passes_and_streams_a_checked_reply(triton_guard: TurnGuard, model_calls: list[str]) -> None:
    params = GenerationParams(temperature=0.2, top_p=0.9, top_k=20, max_new_tokens=40)
    events = [e async for e in triton_guard.stream_turn([ChatTurn("user", "What is the capital of France?")], params)]

    end = events[-1]
    assert isinstance(events[0], InputPassed)
    assert isinstance(end, TurnFinished)
    assert end.verdict.allowed, end.verdict
    assert end.reply.strip()
    assert "".join(e.text for e in events if isinstance(e, Delta)) == end.reply
    assert {c.name for c in end.verdict.checks if c.stage == "output"} >= {"check abuse output"}
    assert model_calls == ["stream"]


async def test_abusive_turn_is_blocked_before_any_generation(triton_guard: TurnGuard, model_calls: list[str]) -> None:
    events = [
        e
        async for e in triton_guard.stream_turn(
            [ChatTurn("user", "Worthless fuckwit")], GenerationParams(max_new_tokens=16)
        )
    ]

    assert len(events) == 1 and isinstance(events[0], TurnFinished)
    verdict = events[0].verdict
    assert (verdict.stage, verdict.rail) == ("input", "check abuse input")
    assert model_calls == []
