"""A user's own conversations: list, open, rename, delete, settings, export; feedback and reports on replies."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from webapp.store import conversations as conv
from webapp.store.engine import Database
from webapp.store.feedback import set_feedback
from webapp.store.flags import report_message
from webapp.store.models import Conversation, Message, User
from webapp.store.transcripts import Transcript, TranscriptMessage, read_transcript

__all__ = ["Conversation", "Conversations", "Message", "Transcript", "TranscriptMessage"]


def _export(session: Session, user: User, conversation_id: int) -> tuple[Conversation, list[Message]]:
    conversation = conv.require_conversation(session, user=user, conversation_id=conversation_id)
    return conversation, conv.list_messages(session, user=user, conversation_id=conversation_id)


def _renamed_title(session: Session, user: User, conversation_id: int, title: str) -> str:
    return conv.rename_conversation(session, user=user, conversation_id=conversation_id, title=title).title


class Conversations:
    """Every call is scoped to ``user``: another user's ids are NotFoundError."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def find(self, user: User, *, search: str = "") -> list[Conversation]:
        return await self.db.run_read(lambda s: conv.list_conversations(s, user=user, search=search))

    async def transcript(self, user: User, *, conversation_id: int) -> Transcript:
        return await self.db.run_read(lambda s: read_transcript(s, user=user, conversation_id=conversation_id))

    async def rename(self, user: User, *, conversation_id: int, title: str) -> str:
        """The title as stored (cleaned and shortened)."""
        return await self.db.run_write(_renamed_title, user, conversation_id, title)

    async def delete(self, user: User, *, conversation_id: int) -> None:
        await self.db.run_write(lambda s: conv.delete_conversation(s, user=user, conversation_id=conversation_id))

    async def save_settings(
        self, user: User, *, conversation_id: int, system_prompt: str, sampling: dict[str, Any]
    ) -> None:
        await self.db.run_write(
            lambda s: conv.update_conversation_settings(
                s, user=user, conversation_id=conversation_id, system_prompt=system_prompt, sampling=sampling
            )
        )

    async def export(self, user: User, *, conversation_id: int) -> tuple[Conversation, list[Message]]:
        """The conversation and all its stored messages, for a download."""
        return await self.db.run_read(_export, user, conversation_id)

    async def give_feedback(self, user: User, *, message_id: int, value: int) -> None:
        await self.db.run_write(lambda s: set_feedback(s, user=user, message_id=message_id, value=value))

    async def report_reply(self, user: User, *, message_id: int, reason: str) -> None:
        """A flag on one of the user's own replies, for the moderators' queue."""
        await self.db.run_write(lambda s: report_message(s, user=user, message_id=message_id, reason=reason))
