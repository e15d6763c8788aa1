"""One turn streamed into the page: send, regenerate, edit and resend, and what Stop leaves behind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import gradio as gr

from webapp.chat.events import ChatEvent, InputChecked, ReplyDelta, ReplyRetracted, TurnEnded, TurnStarted
from webapp.chat.limits import LimitError
from webapp.services.accounts import User
from webapp.services.errors import InvalidInputError, StoreError
from webapp.ui.chat.base import ChatPageBase, Updates, page_error
from webapp.ui.chat.inputs import edited_text, id_from_page
from webapp.ui.rendering import checking_placeholder, live_reply, safe_markdown
from webapp.ui.session import acting_user

CHECKING_STATUS = "Checking your message…"
WRITING_STATUS = "Writing…"
RECHECKING_STATUS = "A safety check withdrew the reply…"
STOPPED_STATUS = "Stopped. The partial reply was kept."
STOP_SETTLE_S = 30.0  # how long "after stop" waits for the cancelled turn to save its partial reply


class TurnHandlers(ChatPageBase):
    async def send_message(
        self,
        text: Any,
        conversation_id: Any,
        system_prompt: Any,
        temperature: Any,
        top_p: Any,
        top_k: Any,
        max_new_tokens: Any,
        request: gr.Request,
    ) -> AsyncIterator[Updates]:
        user = await acting_user(self.ctx, request)
        try:
            cid = id_from_page(conversation_id)
            panel = (system_prompt, temperature, top_p, top_k, max_new_tokens)
            prompt, sampling = await self._turn_settings(user, cid, panel)
        except StoreError as exc:
            raise page_error(exc) from None
        message = text if isinstance(text, str) else ""

        def start() -> AsyncGenerator[ChatEvent, None]:
            if cid is None:
                return self.ctx.chat.send(user=user, text=message, sampling=sampling, system_prompt=prompt)
            return self.ctx.chat.send(user=user, text=message, conversation_id=cid)

        async for update in self._run_turn(user, start, clears_textbox=True):
            yield update

    async def regenerate_reply(
        self,
        conversation_id: Any,
        system_prompt: Any,
        temperature: Any,
        top_p: Any,
        top_k: Any,
        max_new_tokens: Any,
        request: gr.Request,
    ) -> AsyncIterator[Updates]:
        user = await acting_user(self.ctx, request)
        try:
            cid = id_from_page(conversation_id)
            if cid is None:
                raise InvalidInputError("there is no reply to regenerate yet")
            await self._turn_settings(user, cid, (system_prompt, temperature, top_p, top_k, max_new_tokens))
        except StoreError as exc:
            raise page_error(exc) from None

        def start() -> AsyncGenerator[ChatEvent, None]:
            return self.ctx.chat.regenerate(user=user, conversation_id=cid)

        async for update in self._run_turn(user, start, clears_textbox=False):
            yield update

    async def edit_last_message(
        self,
        conversation_id: Any,
        system_prompt: Any,
        temperature: Any,
        top_p: Any,
        top_k: Any,
        max_new_tokens: Any,
        edit: gr.EditData,
        request: gr.Request,
    ) -> AsyncIterator[Updates]:
        user = await acting_user(self.ctx, request)
        try:
            cid = id_from_page(conversation_id)
            if cid is None:
                raise InvalidInputError("open a conversation first")
            opened = await self._open(user, cid)
            index = edit.index if isinstance(edit.index, int) else -1
            edited_id = opened.view.message_id_at(index)
            user_ids = [
                mid
                for mid, shown in zip(opened.view.message_ids, opened.view.messages, strict=True)
                if shown["role"] == "user"
            ]
            if edited_id is None or not user_ids or edited_id != user_ids[-1]:
                raise InvalidInputError("only your last message can be edited and resent")
            new_text = edited_text(edit.value)
            await self._turn_settings(user, cid, (system_prompt, temperature, top_p, top_k, max_new_tokens))
        except StoreError as exc:
            raise page_error(exc) from None

        def start() -> AsyncGenerator[ChatEvent, None]:
            return self.ctx.chat.edit_last(user=user, conversation_id=cid, text=new_text)

        async for update in self._run_turn(user, start, clears_textbox=False):
            yield update

    async def _run_turn(
        self, user: User, start: Callable[[], AsyncGenerator[ChatEvent, None]], *, clears_textbox: bool
    ) -> AsyncIterator[Updates]:
        """Stream one ChatService turn into the page. Refusals before the turn starts keep the textbox."""
        stream = start()
        # aclosing: when Stop cancels this event, the turn is closed at once and saves its partial reply.
        async with contextlib.aclosing(stream):
            try:
                first = await anext(stream)
            except LimitError as exc:
                raise page_error(exc, "Limit reached") from None
            except StoreError as exc:
                raise page_error(exc) from None
            if not isinstance(first, TurnStarted):
                raise gr.Error("the turn did not start", title="Error")
            cid = first.conversation_id
            task = asyncio.current_task()
            if task is not None:
                self._turn_tasks[(user.id, cid)] = task
            try:
                async for update in self._stream_turn(user, cid, stream, clears_textbox=clears_textbox):
                    yield update
            finally:
                if task is not None and self._turn_tasks.get((user.id, cid)) is task:
                    del self._turn_tasks[(user.id, cid)]

    async def _stream_turn(
        self, user: User, cid: int, stream: AsyncIterator[ChatEvent], *, clears_textbox: bool
    ) -> AsyncIterator[Updates]:
        """Everything after TurnStarted: the checking state, the streamed reply, then the stored result."""
        opened = await self._open(user, cid)
        # The stored reply is still an empty placeholder: show the rails at work instead.
        history = opened.view.messages[:-1]
        updates = self._opened(opened)
        updates[self.chatbot] = gr.update(value=[*history, checking_placeholder()], feedback_value=opened.feedback)
        updates.update(self._listing(await self._choices(user), cid))
        updates.update(self._busy_buttons())
        updates[self.status] = CHECKING_STATUS
        if clears_textbox:
            updates[self.textbox] = ""
        yield updates

        shown = ""
        async for event in stream:
            if isinstance(event, InputChecked):
                yield {self.chatbot: [*history, live_reply("…")], self.status: WRITING_STATUS}
            elif isinstance(event, ReplyDelta):
                shown += event.text
                yield {self.chatbot: [*history, live_reply(shown)]}
            elif isinstance(event, ReplyRetracted):
                shown = ""
                yield {self.chatbot: [*history, live_reply("…")], self.status: RECHECKING_STATUS}
            elif isinstance(event, TurnEnded):
                final = self._opened(await self._open(user, cid))
                final.update(self._listing(await self._choices(user), cid))
                final[self.status] = self._ended_status(event)
                yield final

    @staticmethod
    def _ended_status(event: TurnEnded) -> str:
        if event.status == "error":
            return f"**Error:** {safe_markdown(event.error or 'the reply failed.')}"
        return ""

    async def after_stop(self, conversation_id: Any, request: gr.Request) -> Updates:
        """After Stop cancelled the turn: show the saved partial reply, marked as stopped."""
        user = await acting_user(self.ctx, request)
        updates: Updates = {**self._idle_buttons(), self.status: STOPPED_STATUS}
        try:
            cid = id_from_page(conversation_id)
        except InvalidInputError:
            cid = None
        if cid is None:
            return updates
        # The cancelled turn saves its partial reply as it unwinds: wait for that, within bounds.
        task = self._turn_tasks.get((user.id, cid))
        if task is not None and task is not asyncio.current_task():
            await asyncio.wait({task}, timeout=STOP_SETTLE_S)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_SETTLE_S
        try:
            opened = await self._open(user, cid)
            while opened.streaming and loop.time() < deadline:
                await asyncio.sleep(0.1)
                opened = await self._open(user, cid)
        except StoreError as exc:
            raise page_error(exc) from None
        updates.update(self._opened(opened))
        return updates
