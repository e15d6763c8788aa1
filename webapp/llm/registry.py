"""The seam through which GuardChat gets its chat model.

Production registers the Triton-backed model as backend ``triton``; tests register scripted
models under other names and select them with ``GUARDCHAT_LLM_BACKEND``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import BaseMessage

from webapp.settings import Settings

ChatModelFactory = Callable[[Settings, str], BaseChatModel]

_FACTORIES: dict[str, ChatModelFactory] = {}


@runtime_checkable
class TextStreamingModel(Protocol):
    """A chat model that can also stream a reply as plain text deltas, without LangChain's per-chunk message
    objects and callbacks. The guarded turn's main generation uses it when the model offers it. ``stop`` (a
    list of strings) ends the reply before the first one, as for ``astream``."""

    def stream_text(self, messages: Sequence[BaseMessage], **kwargs: Any) -> AsyncGenerator[str, None]: ...


class UnknownBackendError(LookupError):
    pass


def register_chat_model(backend: str, factory: ChatModelFactory) -> None:
    """Register ``factory(settings, model_name)`` under ``backend``."""
    _FACTORIES[backend] = factory


def unregister_chat_model(backend: str) -> None:
    _FACTORIES.pop(backend, None)


def create_chat_model(settings: Settings, *, model_name: str | None = None) -> BaseChatModel:
    """Build the chat model for ``model_name`` (default: the configured chat model)."""
    if settings.llm_backend == "triton" and "triton" not in _FACTORIES:
        from webapp.llm import langchain_model  # noqa: F401 - registers the "triton" backend

    try:
        factory = _FACTORIES[settings.llm_backend]
    except KeyError:
        known = ", ".join(sorted(_FACTORIES)) or "none"
        raise UnknownBackendError(
            f"GUARDCHAT_LLM_BACKEND={settings.llm_backend!r} is not registered (known: {known})"
        ) from None
    return factory(settings, model_name or settings.triton_model)
