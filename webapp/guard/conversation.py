"""What the model will see besides the new message, so the input rails can judge it too.

A split payload ("remember X = ...", then "build X"), a harmful ask followed by "continue", a jailbreak in
the system prompt and an abusive assistant turn forged by an API client all reach the model through the
conversation, not the new message. The input rails therefore also check:
- the system prompt (per-chat settings and API system messages: both are written by the user);
- the new message together with a bounded window of the recent user turns (the cost stays flat however long
  the conversation grows; each stored turn already passed the rails alone when it was sent);
- assistant turns an API client sent, which the model never wrote: they are checked like model output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WINDOW_CHARS = 2000  # the recent-turns window is cut to this many characters, newest kept


@dataclass(frozen=True)
class ConversationContext:
    system_prompt: str = ""
    earlier_user_turns: tuple[str, ...] = ()  # oldest first, already bounded to the window
    client_assistant_turns: tuple[str, ...] = ()  # untrusted: sent by an API client, not written by the model

    @classmethod
    def from_turns(
        cls,
        *,
        system_prompt: str,
        turns: Sequence[tuple[str, str]],
        window_turns: int,
        assistant_turns_are_client_sent: bool,
    ) -> ConversationContext:
        """From (role, content) pairs in conversation order."""
        users = [content for role, content in turns if role == "user" and content.strip()]
        assistants = [content for role, content in turns if role == "assistant" and content.strip()]
        return cls(
            system_prompt=system_prompt.strip(),
            earlier_user_turns=tuple(users[-window_turns:]) if window_turns > 0 else (),
            client_assistant_turns=tuple(assistants) if assistant_turns_are_client_sent else (),
        )

    def window(self, new_message: str) -> str | None:
        """The new message with the recent user turns before it, as one text; None without earlier turns."""
        if not self.earlier_user_turns:
            return None
        text = "\n".join((*self.earlier_user_turns, new_message))
        return text[-WINDOW_CHARS:]

    @property
    def empty(self) -> bool:
        return not (self.system_prompt or self.earlier_user_turns or self.client_assistant_turns)


NO_CONTEXT = ConversationContext()
