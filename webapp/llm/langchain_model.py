"""LangChain chat model over Triton: renders the conversation with the configured prompt template,
fits it into the token budget, and streams the reply. NeMo Guardrails and ChatService both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterator, Sequence
from typing import Any, TypeVar, cast

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from webapp.llm.generation import GenerationOutcome, ServerReport, current_record, settle
from webapp.llm.params import GenerationParams
from webapp.llm.registry import register_chat_model
from webapp.llm.templates import ChatTurn, FittedPrompt, Role, fit_to_budget, get_template
from webapp.llm.tokens import TokenCounter, counter_for
from webapp.llm.triton import TritonChatClient
from webapp.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

_ROLE_ALIASES: dict[str, Role] = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "bot": "assistant",
}
# Keys NeMo Guardrails or OpenAI-style callers may pass that a Triton LLM has no use for.
_IGNORED_KWARGS = frozenset({"stream", "presence_penalty", "frequency_penalty", "n", "seed", "user"})


def _text_of(message: BaseMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = []
    for block in message.content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        else:
            raise ValueError("TritonChatModel accepts text only; the message has a non-text content block")
    return "".join(parts)


def to_chat_turns(messages: Sequence[BaseMessage]) -> list[ChatTurn]:
    """LangChain messages as template turns (system, user, assistant)."""
    turns = []
    for message in messages:
        if isinstance(message, SystemMessage):
            role: str = "system"
        elif isinstance(message, HumanMessage):
            role = "user"
        elif isinstance(message, AIMessage):
            role = "assistant"
        elif isinstance(message, ChatMessage):
            role = message.role
        else:
            role = message.type
        if role not in _ROLE_ALIASES:
            raise ValueError(f"TritonChatModel cannot render a {role!r} message (only system, user, assistant)")
        turns.append(ChatTurn(_ROLE_ALIASES[role], _text_of(message)))
    return turns


class _BackgroundLoop:
    """One event loop on a daemon thread for sync callers, so they never nest in a running loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="triton-sync-calls", daemon=True).start()
                self._loop = loop
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._ensure()).result()


_SYNC_LOOP = _BackgroundLoop()


class TritonChatModel(BaseChatModel):
    """Chat model served by Triton (any supported dialect), with prompt template and token budget.

    Per-call overrides through kwargs or ``.bind(...)``: ``temperature``, ``top_p``, ``top_k``,
    ``max_tokens`` / ``max_new_tokens``, ``stop``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: TritonChatClient = Field(exclude=True)
    counter: Any = Field(exclude=True, description="TokenCounter used for the prompt budget.")
    model_name: str
    template_name: str = "chatml"
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    max_tokens: int = 512
    max_output_tokens_limit: int = 1024
    context_tokens: int = 4096
    max_input_tokens: int = 3072
    stop: list[str] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, model_name: str | None = None, *, client: TritonChatClient | None = None
    ) -> TritonChatModel:
        name = model_name or settings.triton_model
        counter: TokenCounter = counter_for(settings, name)
        return cls(
            client=client or TritonChatClient.from_settings(settings, name),
            counter=counter,
            model_name=name,
            template_name=get_template(settings.prompt_template).name,
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k,
            max_tokens=settings.max_output_tokens,
            max_output_tokens_limit=settings.max_output_tokens_limit,
            context_tokens=settings.context_tokens,
            max_input_tokens=settings.max_input_tokens,
        )

    @property
    def _llm_type(self) -> str:
        return "guardchat-triton"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "url": self.client.url,
            "template": self.template_name,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_tokens": self.max_tokens,
        }

    # --- preparing one call ----------------------------------------------------------------

    def _params(self, kwargs: dict[str, Any]) -> GenerationParams:
        overrides = {k: v for k, v in kwargs.items() if v is not None}
        max_new = overrides.pop("max_new_tokens", overrides.pop("max_tokens", self.max_tokens))
        params = GenerationParams(
            temperature=overrides.pop("temperature", self.temperature),
            top_p=overrides.pop("top_p", self.top_p),
            top_k=overrides.pop("top_k", self.top_k),
            max_new_tokens=min(int(max_new), self.max_output_tokens_limit),
        )
        unknown = set(overrides) - _IGNORED_KWARGS
        if unknown:
            raise TypeError(f"TritonChatModel got unsupported arguments: {sorted(unknown)}")
        return params

    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[FittedPrompt, GenerationParams, list[str]]:
        template = get_template(self.template_name)
        params = self._params(kwargs)
        fitted = fit_to_budget(
            template,
            to_chat_turns(messages),
            self.counter,
            self.max_input_tokens,
            self.context_tokens,
            params.max_new_tokens,
        )
        if fitted.dropped_turns:
            log.info("prompt over budget: dropped %d oldest turn(s)", fitted.dropped_turns)
        stops = [*template.stop, *(self.stop or []), *(stop or [])]
        return fitted, params.model_copy(update={"max_new_tokens": fitted.max_new_tokens}), stops

    def _outcome(
        self, fitted: FittedPrompt, params: GenerationParams, report: ServerReport, text: str
    ) -> GenerationOutcome:
        """How the generation ended: the server's word where it gave it, else our counts (the prompt as
        rendered, the reply against the max-token limit sent)."""
        return settle(
            report,
            prompt_tokens=fitted.prompt_tokens,
            count_completion=lambda: self.counter.count(text),
            max_new_tokens=params.max_new_tokens,
        )

    @staticmethod
    def _usage(outcome: GenerationOutcome) -> UsageMetadata:
        return UsageMetadata(
            input_tokens=outcome.prompt_tokens,
            output_tokens=outcome.completion_tokens,
            total_tokens=outcome.prompt_tokens + outcome.completion_tokens,
        )

    def _metadata(self, fitted: FittedPrompt, outcome: GenerationOutcome | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "model_name": self.model_name,
            "prompt_tokens": fitted.prompt_tokens,
            "max_new_tokens": fitted.max_new_tokens,
            "dropped_turns": fitted.dropped_turns,
            "dropped_messages": fitted.dropped_messages,
        }
        if outcome is not None:
            metadata["finish_reason"] = outcome.finish_reason
            metadata["prompt_tokens"] = outcome.prompt_tokens
        return metadata

    # --- async (the real implementation) ---------------------------------------------------

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        fitted, params, stops = self._prepare(messages, stop, kwargs)
        report = ServerReport()
        text = await self.client.generate(fitted.text, params, stops, report=report)
        outcome = self._outcome(fitted, params, report, text)
        metadata = self._metadata(fitted, outcome)
        message = AIMessage(content=text, response_metadata=metadata, usage_metadata=self._usage(outcome))
        generation = ChatGeneration(message=message, generation_info={"finish_reason": outcome.finish_reason})
        return ChatResult(generations=[generation], llm_output=metadata)

    async def stream_text(
        self, messages: Sequence[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncGenerator[str, None]:
        """The reply as text deltas (webapp.llm.registry.TextStreamingModel): what ``astream`` yields, minus
        LangChain's chunk objects, run managers and callbacks, which cost ~0.1 ms per token.

        How the generation ended goes to the caller's ``GenerationRecord`` (webapp.llm.generation), if any,
        also when the stream is closed early (then without a finish reason).
        """
        fitted, params, stops = self._prepare(list(messages), stop, kwargs)
        record = current_record()
        report = ServerReport()
        parts: list[str] = []
        try:
            async with contextlib.aclosing(self.client.stream(fitted.text, params, stops, report=report)) as deltas:
                async for delta in deltas:
                    parts.append(delta)
                    yield delta
        finally:
            if record is not None:
                record.outcome = self._outcome(fitted, params, report, "".join(parts))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        fitted, params, stops = self._prepare(messages, stop, kwargs)
        report = ServerReport()
        parts: list[str] = []
        async with contextlib.aclosing(self.client.stream(fitted.text, params, stops, report=report)) as deltas:
            async for delta in deltas:
                parts.append(delta)
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta))
                if run_manager:
                    await run_manager.on_llm_new_token(delta, chunk=chunk)
                yield chunk
        outcome = self._outcome(fitted, params, report, "".join(parts))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                response_metadata=self._metadata(fitted, outcome),
                usage_metadata=self._usage(outcome),
                chunk_position="last",
            ),
            generation_info={"finish_reason": outcome.finish_reason},
        )

    # --- sync (runs the async path on a background loop) -----------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return _SYNC_LOOP.run(self._agenerate(messages, stop, **kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        chunks = cast(AsyncGenerator[ChatGenerationChunk, None], self._astream(messages, stop, **kwargs))

        async def next_chunk() -> ChatGenerationChunk:
            return await anext(chunks)

        try:
            while True:
                try:
                    chunk = _SYNC_LOOP.run(next_chunk())
                except StopAsyncIteration:
                    return
                if run_manager and chunk.text:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        finally:
            _SYNC_LOOP.run(chunks.aclose())


_SHARED_CLIENTS: dict[tuple[str, str, str], TritonChatClient] = {}
_SHARED_LOCK = threading.Lock()


def shared_client(settings: Settings, model_name: str) -> TritonChatClient:
    """One client (one channel per event loop) per Triton URL, protocol and model in this process."""
    key = (settings.triton_url, settings.triton_protocol, model_name)
    with _SHARED_LOCK:
        if key not in _SHARED_CLIENTS:
            _SHARED_CLIENTS[key] = TritonChatClient.from_settings(settings, model_name)
        return _SHARED_CLIENTS[key]


def _triton_chat_model(settings: Settings, model_name: str) -> BaseChatModel:
    return TritonChatModel.from_settings(settings, model_name, client=shared_client(settings, model_name))


register_chat_model("triton", _triton_chat_model)
