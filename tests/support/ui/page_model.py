"""A scripted chat model for the chat-page tests, registered through the production seam as ``ui-scripted``.

Unlike tests/support/guard/scripted_model.py it has a gate: while ``PAGE_MODEL.gate`` is closed every generation
waits before its first token, so a test can hold many streams open at once and release them when it has
seen what it wanted, without timing assumptions. The gate is a threading.Event because the app runs
under uvicorn in another thread (and event loop) of the test process.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from webapp.llm.registry import register_chat_model
from webapp.settings import Settings

BACKEND = "ui-scripted"
_TOKENS = re.compile(r"\s*\S+|\s+")


def _default_reply(user_text: str) -> str:
    return f"Here is a helpful answer about: {user_text}"


@dataclass
class PageModel:
    reply: Callable[[str], str] = _default_reply
    error: Exception | None = None
    token_delay_s: float = 0.0
    gate: threading.Event = field(default_factory=threading.Event)
    prompts: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.reply = _default_reply
        self.error = None
        self.token_delay_s = 0.0
        self.prompts.clear()
        self.gate.set()


PAGE_MODEL = PageModel()
PAGE_MODEL.gate.set()


def _newest_user_text(messages: list[BaseMessage]) -> str:
    return next((str(m.content) for m in reversed(messages) if m.type == "human"), "")


class PageChatModel(BaseChatModel):
    model_name: str = BACKEND

    @property
    def _llm_type(self) -> str:
        return BACKEND

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
        text = "".join([chunk.text async for chunk in self._astream(messages, stop, None, **kwargs)])
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        user_text = _newest_user_text(messages)
        PAGE_MODEL.prompts.append(user_text)
        # Polled, not gate.wait() in a worker thread: 64 held streams would take every thread of the
        # default executor, which the app needs for its database work.
        while not PAGE_MODEL.gate.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if PAGE_MODEL.error is not None:
            raise PAGE_MODEL.error
        for token in _TOKENS.findall(PAGE_MODEL.reply(user_text)):
            if PAGE_MODEL.token_delay_s:
                await asyncio.sleep(PAGE_MODEL.token_delay_s)
            yield ChatGenerationChunk(message=AIMessageChunk(content=token))


def _factory(settings: Settings, model_name: str) -> BaseChatModel:
    return PageChatModel(model_name=model_name)


register_chat_model(BACKEND, _factory)
