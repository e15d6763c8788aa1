"""Typed failures of the model layer. Every message says what went wrong and what to do about it."""

from __future__ import annotations


class LLMError(Exception):
    """Base class: the model could not produce a reply."""


class TritonUnavailableError(LLMError):
    """The Triton server cannot be reached."""


class ModelNotReadyError(LLMError):
    """The server is up but the model is not found, not loaded, or not usable by this client."""


class ModelServerError(LLMError):
    """The model server reported a failure (in-band error text or a rejected request)."""


class TritonTimeoutError(LLMError):
    """Triton did not answer (or did not send the next token) in time."""


class PromptTooLongError(LLMError):
    """The newest message alone does not fit the input token budget."""

    def __init__(self, *, prompt_tokens: int, max_input_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.max_input_tokens = max_input_tokens
        self.excess_tokens = prompt_tokens - max_input_tokens
        super().__init__(
            f"The message is too long by {self.excess_tokens} tokens: the prompt needs {prompt_tokens} "
            f"tokens but the input limit is {max_input_tokens}. Shorten the message (or the system prompt)."
        )
