"""Thumbs up and down on a reply, and reporting a reply to the moderators."""

from __future__ import annotations

from typing import Any

import gradio as gr

from webapp.services.errors import InvalidInputError, StoreError
from webapp.ui.chat.base import REPORT_OPTION, ChatPageBase, Updates, page_error
from webapp.ui.chat.inputs import id_from_page
from webapp.ui.session import acting_user

REPORTED_STATUS = "Thanks. A moderator will review this reply."
FEEDBACK_STATUS = "Thanks for the feedback."
FEEDBACK_VALUES = {"Like": 1, "Dislike": -1}


class FeedbackHandlers(ChatPageBase):
    async def give_feedback(self, conversation_id: Any, like: gr.LikeData, request: gr.Request) -> Updates:
        """Thumbs up/down on a reply, or "Report", which opens the report form for that reply."""
        user = await acting_user(self.ctx, request)
        try:
            cid = id_from_page(conversation_id)
            if cid is None:
                raise InvalidInputError("open a conversation first")
            opened = await self._open(user, cid)
            index = like.index if isinstance(like.index, int) else -1
            message_id = opened.view.message_id_at(index)
            if message_id is None or opened.view.messages[index]["role"] != "assistant":
                raise InvalidInputError("only replies take feedback")
            if like.liked == "":
                return {self.status: ""}  # the browser un-selected its choice; the stored vote stays
            if like.liked == REPORT_OPTION:
                return {
                    self.report_panel: gr.update(visible=True),
                    self.report_message_id: message_id,
                    self.report_reason: "",
                }
            value = (1 if like.liked else -1) if isinstance(like.liked, bool) else FEEDBACK_VALUES.get(str(like.liked))
            if value is None:
                raise InvalidInputError(f"unknown feedback {like.liked!r}")
            await self.ctx.conversations.give_feedback(user, message_id=message_id, value=value)
        except StoreError as exc:
            raise page_error(exc) from None
        return {self.status: FEEDBACK_STATUS}

    async def report_reply(self, message_id: Any, reason: Any, request: gr.Request) -> Updates:
        user = await acting_user(self.ctx, request)
        try:
            mid = id_from_page(message_id)
            if mid is None:
                raise InvalidInputError("choose a reply to report")
            await self.ctx.conversations.report_reply(
                user, message_id=mid, reason=reason if isinstance(reason, str) else ""
            )
        except StoreError as exc:
            raise page_error(exc) from None
        return {
            self.report_panel: gr.update(visible=False),
            self.report_message_id: None,
            self.report_reason: "",
            self.status: REPORTED_STATUS,
        }

    async def close_report(self, request: gr.Request) -> Updates:
        await acting_user(self.ctx, request)
        return {self.report_panel: gr.update(visible=False), self.report_message_id: None, self.report_reason: ""}
