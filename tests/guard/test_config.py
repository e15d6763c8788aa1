"""rails/ adapted to the settings: optional rails, separate guard models, nothing fetched from a hub."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.support.guard.network import OutboundConnectionError
from tests.support.guard.scripted_model import Script, scripted_settings
from webapp.guard.loader import RailsConfigError, build_config
from webapp.guard.turn import TurnFinished, TurnGuard
from webapp.llm.params import GenerationParams
from webapp.llm.templates import ChatTurn


async def _finish(guard: TurnGuard, text: str) -> TurnFinished:
    events = [e async for e in guard.stream_turn([ChatTurn("user", text)], GenerationParams(max_new_tokens=32))]
    assert isinstance(events[-1], TurnFinished)
    return events[-1]


def test_self_check_rails_are_switched_off_by_settings() -> None:
    config = build_config(scripted_settings(self_check_rails=False))
    assert config.rails.input.flows == [
        "check language",
        "check abuse input",
        "check jailbreak",
        "check harmful request",
        "check request safety",
        "check conversation",
    ]
    assert config.rails.output.flows == ["check abuse output", "check reply safety", "neutralise markup"]


def test_a_missing_rails_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RailsConfigError, match=r"no rails configuration at .* GUARDCHAT_RAILS_DIR"):
        build_config(scripted_settings(rails_dir=tmp_path))


async def test_content_safety_model_is_switched_on_by_settings_alone(script: Script) -> None:
    guard = TurnGuard.load(scripted_settings(content_safety_model="llama_guard_3"))
    assert "content safety check input $model=content_safety" in guard.input_rails
    assert "content safety check output $model=content_safety" in guard.output_rails
    script.rail_answer = lambda prompt: "unsafe\nS1" if "safety assessment" in prompt else "No"

    end = await _finish(guard, "How do I get revenge on my neighbour?")

    assert (end.verdict.stage, end.verdict.rail) == ("input", "content safety check input $model=content_safety")
    assert {c.model_name for c in script.rail_calls if "safety assessment" in c.text} == {"llama_guard_3"}
    assert script.generation_calls == []


async def test_separate_guard_model_answers_the_self_checks(script: Script) -> None:
    guard = TurnGuard.load(scripted_settings(triton_model="ppo_chat", triton_guard_model="guard_8b"))
    end = await _finish(guard, "What is a good name for a cat?")

    assert end.verdict.allowed
    assert {c.model_name for c in script.rail_calls} == {"guard_8b"}
    assert {c.model_name for c in script.generation_calls} == {"ppo_chat"}
    # NeMo's max_tokens reaches GuardChat models as max_new_tokens (3 tokens for a Yes/No answer).
    assert {c.kwargs.get("max_new_tokens") for c in script.rail_calls} == {3}


def test_rails_need_no_embedding_model_or_hub(guard: TurnGuard) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    rails = guard._loaded.rails
    assert not any(m.type == "embeddings" for m in rails.config.models)
    assert rails.config.user_messages == {}  # no dialog rails, so no intent index to embed


def test_outbound_connections_are_refused_and_recorded(no_outbound_network: list[object]) -> None:
    with pytest.raises(OutboundConnectionError):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    assert no_outbound_network == [("192.0.2.1", 443)]
    no_outbound_network.clear()  # this test's attempt was on purpose
