"""Values the chat page sends, read as untrusted input: ids, edited text, and the chat settings panel."""

from __future__ import annotations

from typing import Any

from webapp.chat.service import params_for
from webapp.services.errors import InvalidInputError
from webapp.settings import Settings

MAX_SYSTEM_PROMPT_CHARS = 4000


def id_from_page(value: Any) -> int | None:
    """A conversation or message id as the page sends it (a number, or nothing)."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{value!r} is not an id") from None
    if not number.is_integer():
        raise InvalidInputError(f"{value!r} is not an id")
    return int(number)


def _number(value: Any, name: str) -> float:
    if value is None or isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, not {value!r}") from None


def _whole(value: Any, name: str) -> int:
    number = _number(value, name)
    if not number.is_integer():
        raise InvalidInputError(f"{name} must be a whole number, not {value!r}")
    return int(number)


def edited_text(value: Any) -> str:
    """The text of an edited message as the Chatbot sends it (a string, or a list of content parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in value)
    if isinstance(value, dict):
        return str(value.get("text", ""))
    raise InvalidInputError("the edited message has no text")


def chat_settings(
    settings: Settings, system_prompt: Any, temperature: Any, top_p: Any, top_k: Any, max_new_tokens: Any
) -> tuple[str, dict[str, Any]]:
    """(system prompt, sampling) from the settings panel, or InvalidInputError naming the broken limit."""
    prompt = system_prompt if isinstance(system_prompt, str) else ""
    if len(prompt) > MAX_SYSTEM_PROMPT_CHARS:
        raise InvalidInputError(
            f"the system prompt is {len(prompt)} characters; the limit is {MAX_SYSTEM_PROMPT_CHARS}"
        )
    sampling = {
        "temperature": _number(temperature, "temperature"),
        "top_p": _number(top_p, "top_p"),
        "top_k": _whole(top_k, "top_k"),
        "max_new_tokens": _whole(max_new_tokens, "max new tokens"),
    }
    params_for(settings, sampling)  # the same validation ChatService applies, before anything is saved
    return prompt, sampling
