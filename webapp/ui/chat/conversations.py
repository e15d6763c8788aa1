"""The sidebar: page load, new chat, open, search, rename and delete a conversation."""

from __future__ import annotations

from typing import Any

import gradio as gr

from webapp.services.errors import InvalidInputError, NotFoundError, StoreError
from webapp.ui.chat.base import ChatPageBase, OpenedConversation, Updates, page_error
from webapp.ui.chat.inputs import id_from_page
from webapp.ui.rendering import safe_markdown
from webapp.ui.session import acting_user

UNAVAILABLE_STATUS = "That conversation is not available. Here is a new chat."


class ConversationHandlers(ChatPageBase):
    async def load_page(self, conversation_id: Any, request: gr.Request) -> Updates:
        """Page load: who is signed in, their conversations, and the one named in the URL if it is theirs."""
        user = await acting_user(self.ctx, request)
        opened: OpenedConversation | None = None
        status = ""
        try:
            cid = id_from_page(conversation_id)
            if cid is not None:
                opened = await self._open(user, cid)
        except (NotFoundError, InvalidInputError):
            # A stale or foreign link opens a new chat and says no more than that.
            status = UNAVAILABLE_STATUS
        staff = " · [Moderation](/moderation)" if user.is_moderator else ""
        staff += " · [Accounts](/admin)" if user.role == "admin" else ""
        account = f"Signed in as **{safe_markdown(user.username)}**{staff} · [Sign out](/logout)"
        updates: Updates = {self.account: account, self.status: status}
        updates.update(self._opened(opened))
        updates.update(self._listing(await self._choices(user), opened.conversation.id if opened else None))
        # The composer opens only now, so a message sent at once cannot race this first update.
        updates[self.textbox] = gr.update(interactive=True)
        updates[self.send_button] = gr.update(visible=True, interactive=True)
        return updates

    async def new_chat(self, request: gr.Request) -> Updates:
        user = await acting_user(self.ctx, request)
        updates = self._opened(None)
        updates.update(self._listing(await self._choices(user), None))
        updates[self.status] = ""
        updates[self.search] = ""
        return updates

    async def open_conversation(self, selected: Any, request: gr.Request) -> Updates:
        user = await acting_user(self.ctx, request)
        try:
            cid = id_from_page(selected)
            opened = await self._open(user, cid) if cid is not None else None
        except StoreError as exc:
            raise page_error(exc) from None
        updates = self._opened(opened)
        updates[self.status] = ""
        return updates

    async def search_conversations(self, query: Any, conversation_id: Any, request: gr.Request) -> Updates:
        user = await acting_user(self.ctx, request)
        text = query if isinstance(query, str) else ""
        try:
            selected = id_from_page(conversation_id)
        except InvalidInputError:
            selected = None
        return self._listing(await self._choices(user, text), selected)

    async def rename_conversation(self, conversation_id: Any, title: Any, query: Any, request: gr.Request) -> Updates:
        user = await acting_user(self.ctx, request)
        try:
            cid = id_from_page(conversation_id)
            if cid is None:
                raise InvalidInputError("open a conversation first")
            new_title = await self.ctx.conversations.rename(
                user, conversation_id=cid, title=title if isinstance(title, str) else ""
            )
        except StoreError as exc:
            raise page_error(exc) from None
        updates = self._listing(await self._choices(user, query if isinstance(query, str) else ""), cid)
        updates[self.title_box] = new_title
        updates[self.heading] = f"### {safe_markdown(new_title)}"
        updates[self.status] = f"Renamed to “{safe_markdown(new_title)}”."
        return updates

    async def delete_conversation(self, conversation_id: Any, request: gr.Request) -> Updates:
        """Deletes after the browser's confirm(); a cancelled confirm sends no id and changes nothing."""
        user = await acting_user(self.ctx, request)
        try:
            cid = id_from_page(conversation_id)
        except InvalidInputError as exc:
            raise page_error(exc) from None
        if cid is None:
            return {self.status: ""}
        try:
            await self.ctx.conversations.delete(user, conversation_id=cid)
        except StoreError as exc:
            raise page_error(exc) from None
        updates = self._opened(None)
        updates.update(self._listing(await self._choices(user), None))
        updates[self.status] = "Conversation deleted."
        return updates
