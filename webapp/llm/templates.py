"""Prompt templates (how a conversation becomes one prompt string) and the token budget.

The budget keeps every system turn and the newest conversation turn, and drops the oldest whole
turns (a user message together with the assistant replies that follow it) until the prompt fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from webapp.llm.errors import PromptTooLongError
from webapp.llm.tokens import TokenCounter

Role = Literal["system", "user", "assistant"]
_ROLES = frozenset(get_args(Role))


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"unknown chat role {self.role!r}; expected one of {sorted(_ROLES)}")


class PromptTemplate(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def stop(self) -> list[str]:
        """Strings that end the reply; they are cut client-side and never shown."""
        ...

    def render(self, messages: Sequence[ChatTurn]) -> str:
        """The prompt for the model's next (assistant) reply to ``messages``."""
        ...


def _defuse(content: str, markers: Sequence[str]) -> str:
    # A user typing a control marker must not be able to open a forged turn.
    for marker in markers:
        content = content.replace(marker, "< " + marker[1:])
    return content


class NemoChatTemplate:
    """NeMo chat format used by Llama3-70B-PPO-Chat (all system turns go in the one System header)."""

    name = "nemo-chat"
    _markers = ("<extra_id_0>", "<extra_id_1>", "<extra_id_2>")

    @property
    def stop(self) -> list[str]:
        # The reply ends "...\n<extra_id_1>User": cutting at the newline keeps it out of the reply.
        return ["\n<extra_id_1>", "<extra_id_1>"]

    def render(self, messages: Sequence[ChatTurn]) -> str:
        system = "\n".join(_defuse(m.content, self._markers) for m in messages if m.role == "system")
        parts = [f"<extra_id_0>System\n{system}\n"]
        for message in messages:
            if message.role == "system":
                continue
            speaker = "User" if message.role == "user" else "Assistant"
            parts.append(f"<extra_id_1>{speaker}\n{_defuse(message.content, self._markers)}\n")
        parts.append("<extra_id_1>Assistant\n")
        return "".join(parts)


class ChatMLTemplate:
    """ChatML, used by the local SmolLM2 model."""

    name = "chatml"
    _markers = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")

    @property
    def stop(self) -> list[str]:
        return ["<|im_end|>", "<|endoftext|>"]

    def render(self, messages: Sequence[ChatTurn]) -> str:
        parts = [f"<|im_start|>{m.role}\n{_defuse(m.content, self._markers)}<|im_end|>\n" for m in messages]
        parts.append("<|im_start|>assistant\n")
        return "".join(parts)


_TEMPLATES: dict[str, PromptTemplate] = {t.name: t for t in (NemoChatTemplate(), ChatMLTemplate())}


def get_template(name: str) -> PromptTemplate:
    try:
        return _TEMPLATES[name]
    except KeyError:
        raise ValueError(
            f"unknown prompt template {name!r}; GUARDCHAT_PROMPT_TEMPLATE must be one of {sorted(_TEMPLATES)}"
        ) from None


@dataclass(frozen=True, slots=True)
class FittedPrompt:
    text: str
    max_new_tokens: int
    dropped_turns: int
    prompt_tokens: int
    dropped_messages: int
    kept: tuple[ChatTurn, ...]


def _conversation_turns(messages: Sequence[ChatTurn]) -> list[list[int]]:
    """Indexes of non-system messages, grouped into turns that each start at a user message."""
    turns: list[list[int]] = []
    for index, message in enumerate(messages):
        if message.role == "system":
            continue
        if message.role == "user" or not turns:
            turns.append([])
        turns[-1].append(index)
    return turns


def fit_to_budget(
    template: PromptTemplate,
    messages: Sequence[ChatTurn],
    counter: TokenCounter,
    max_input_tokens: int,
    context_tokens: int,
    max_new_tokens: int,
) -> FittedPrompt:
    """Render ``messages`` into at most ``max_input_tokens``, dropping the oldest whole turns.

    ``max_new_tokens`` is clamped to what the context window has left after the prompt.
    Raises PromptTooLongError when the system prompt plus the newest turn alone do not fit.
    """
    if max_input_tokens >= context_tokens:
        raise ValueError(f"max_input_tokens ({max_input_tokens}) must be below context_tokens ({context_tokens})")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")

    turns = _conversation_turns(messages)
    counted: dict[int, tuple[str, int, tuple[ChatTurn, ...]]] = {}

    def attempt(dropped: int) -> tuple[str, int, tuple[ChatTurn, ...]]:
        if dropped not in counted:
            gone = {index for turn in turns[:dropped] for index in turn}
            kept = tuple(m for i, m in enumerate(messages) if i not in gone)
            text = template.render(kept)
            counted[dropped] = (text, counter.count(text), kept)
        return counted[dropped]

    # Binary search for the fewest dropped turns that fit; `fits` holds at `high`, fails below `low`.
    low, high = 0, max(len(turns) - 1, 0)
    if attempt(high)[1] > max_input_tokens:
        raise PromptTooLongError(prompt_tokens=attempt(high)[1], max_input_tokens=max_input_tokens)
    while low < high:
        middle = (low + high) // 2
        if attempt(middle)[1] <= max_input_tokens:
            high = middle
        else:
            low = middle + 1
    text, tokens, kept = attempt(high)
    return FittedPrompt(
        text=text,
        max_new_tokens=min(max_new_tokens, context_tokens - tokens),
        dropped_turns=high,
        dropped_messages=len(messages) - len(kept),
        prompt_tokens=tokens,
        kept=kept,
    )
