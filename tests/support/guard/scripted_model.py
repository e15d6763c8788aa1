"""A scripted chat model, registered through the production seam as backend ``scripted``.

Main generation streams the scripted reply word by word; rail prompts (self check) get the scripted verdict
answer. Every call is recorded, so tests can assert what the model was (or was not) asked.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from tests.support.paths import PROJECT_ROOT
from tests.support.settings import make_settings
from webapp.llm.registry import register_chat_model
from webapp.settings import Settings

BACKEND = "scripted"
_TOKENS = re.compile(r"\s*\S+|\s+")
_RAIL_PROMPT_MARKERS = ("Answer Yes or No.", "safety assessment")


@dataclass
class ModelRequest:
    model_name: str
    messages: list[BaseMessage]
    kwargs: dict[str, Any]
    streamed: bool

    @property
    def is_rail_check(self) -> bool:
        return any(marker in str(self.messages[-1].content) for marker in _RAIL_PROMPT_MARKERS)

    @property
    def text(self) -> str:
        return "\n".join(f"{m.type}: {m.content}" for m in self.messages)


@dataclass
class Script:
    """What the scripted model answers. Tests change it through the ``script`` fixture."""

    reply: Callable[[str], str] = lambda user_text: f"Here is a helpful answer about: {user_text}"
    rail_answer: Callable[[str], str] = lambda prompt: "No"
    main_error: Exception | None = None
    rail_error: Exception | None = None
    rail_delay_s: float = 0.0
    token_delay_s: float = 0.0
    calls: list[ModelRequest] = field(default_factory=list)
    streams_closed: int = 0
    tokens_streamed: int = 0

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    @property
    def generation_calls(self) -> list[ModelRequest]:
        return [c for c in self.calls if not c.is_rail_check]

    @property
    def rail_calls(self) -> list[ModelRequest]:
        return [c for c in self.calls if c.is_rail_check]


SCRIPT = Script()


def _newest_user_text(messages: list[BaseMessage]) -> str:
    for message in reversed(messages):
        if message.type == "human":
            return str(message.content)
    return ""


class ScriptedChatModel(BaseChatModel):
    model_name: str = "scripted"

    @property
    def _llm_type(self) -> str:
        return BACKEND

    def _record(self, messages: list[BaseMessage], kwargs: dict[str, Any], streamed: bool) -> ModelRequest:
        request = ModelRequest(self.model_name, list(messages), dict(kwargs), streamed)
        SCRIPT.calls.append(request)
        return request

    async def _rail_answer(self, request: ModelRequest) -> str:
        if SCRIPT.rail_delay_s:
            await asyncio.sleep(SCRIPT.rail_delay_s)
        if SCRIPT.rail_error is not None:
            raise SCRIPT.rail_error
        return SCRIPT.rail_answer(str(request.messages[-1].content))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise NotImplementedError("GuardChat calls chat models asynchronously only")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._record(messages, kwargs, streamed=False)
        if request.is_rail_check:
            text = await self._rail_answer(request)
        else:
            if SCRIPT.main_error is not None:
                raise SCRIPT.main_error
            text = SCRIPT.reply(_newest_user_text(messages))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = self._record(messages, kwargs, streamed=True)
        try:
            if request.is_rail_check:
                yield ChatGenerationChunk(message=AIMessageChunk(content=await self._rail_answer(request)))
                return
            if SCRIPT.main_error is not None:
                raise SCRIPT.main_error
            for token in _TOKENS.findall(SCRIPT.reply(_newest_user_text(messages))):
                await asyncio.sleep(SCRIPT.token_delay_s)
                SCRIPT.tokens_streamed += 1
                yield ChatGenerationChunk(message=AIMessageChunk(content=token))
        finally:
            SCRIPT.streams_closed += 1


def _factory(settings: Settings, model_name: str) -> BaseChatModel:
    return ScriptedChatModel(model_name=model_name)


register_chat_model(BACKEND, _factory)


def scripted_settings(**overrides: Any) -> Settings:
    """Settings fixed per process (not per test) so the loaded rails can be shared between tests."""
    values: dict[str, Any] = {
        "llm_backend": BACKEND,
        "rails_dir": PROJECT_ROOT / "rails",
        "data_dir": Path("/nonexistent-guardchat-tests"),
        "output_chunk_size": 8,
        "output_context_size": 2,
        "self_check_rails": True,
    }
    values.update(overrides)
    return make_settings(**values)
