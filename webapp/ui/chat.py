"""The chat page: sidebar of conversations, the streamed chat, message actions, feedback and settings.

Every Gradio event below is also an HTTP endpoint. Each handler therefore starts by resolving the acting
user from the signed session (``acting_user``) and passes that user to the services or to ``ChatService``,
which scope everything by it; ids that come from the page are only ever looked up *within* that user's
data. ``EVENT_HANDLERS`` lists every handler wired to an event, and a test calls each one over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.blocks import Block

from webapp.chat.events import (
    ChatEvent,
    InputChecked,
    ReplyDelta,
    ReplyRetracted,
    TurnEnded,
    TurnStarted,
)
from webapp.chat.limits import LimitError
from webapp.context import AppContext
from webapp.llm.params import GenerationParams
from webapp.services.accounts import User
from webapp.services.conversations import Conversation, Transcript
from webapp.services.errors import InvalidInputError, NotFoundError, StoreError
from webapp.ui.chat_inputs import chat_settings, edited_text, id_from_page
from webapp.ui.export import export_path
from webapp.ui.rendering import ChatView, checking_placeholder, live_reply, render_messages, safe_markdown
from webapp.ui.session import acting_user
from webapp.ui.styles import (
    CONFIRM_DELETE_JS,
    READ_CONVERSATION_FROM_URL_JS,
    TOGGLE_SETTINGS_JS,
    WRITE_CONVERSATION_TO_URL_JS,
)

# Every Gradio event handler of this page, by method name. Wiring an event to anything else is a bug,
# and tests/ui/test_endpoints.py checks each of these over HTTP without a session and as another user.
EVENT_HANDLERS: tuple[str, ...] = (
    "load_page",
    "new_chat",
    "open_conversation",
    "search_conversations",
    "rename_conversation",
    "delete_conversation",
    "send_message",
    "regenerate_reply",
    "edit_last_message",
    "after_stop",
    "give_feedback",
    "report_reply",
    "close_report",
)

CHECKING_STATUS = "Checking your message…"
WRITING_STATUS = "Writing…"
RECHECKING_STATUS = "A safety check withdrew the reply…"
STOPPED_STATUS = "Stopped. The partial reply was kept."
REPORTED_STATUS = "Thanks. A moderator will review this reply."
FEEDBACK_STATUS = "Thanks for the feedback."
UNAVAILABLE_STATUS = "That conversation is not available. Here is a new chat."
STOP_SETTLE_S = 30.0  # how long "after stop" waits for the cancelled turn to save its partial reply
FEEDBACK_VALUES = {"Like": 1, "Dislike": -1}

Updates = dict[Block, Any]  # component → new value or gr.update(...)
REPORT_OPTION = "Report"


@dataclass(frozen=True)
class OpenedConversation:
    conversation: Conversation
    view: ChatView
    feedback: list[str | None]
    streaming: bool  # a reply is still being written (or its cancelled turn is still saving it)


def _opened(transcript: Transcript) -> OpenedConversation:
    messages = transcript.messages
    feedback: list[str | None] = [
        None if m.vote is None else ("Like" if m.vote > 0 else "Dislike") for m in messages if m.role == "assistant"
    ]
    streaming = any(m.status in ("pending", "streaming") for m in messages)
    return OpenedConversation(transcript.conversation, render_messages(messages), feedback, streaming)


def _error(exc: Exception, title: str = "Not possible") -> gr.Error:
    return gr.Error(str(exc), title=title)


class ChatPage:
    """Builds the Blocks and holds the handlers; one instance per app process."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.defaults = GenerationParams.defaults(ctx.settings)
        # (user id, conversation id) → the Gradio task streaming that turn, so "after stop" can wait for it.
        self._turn_tasks: dict[tuple[int, int], asyncio.Task[Any]] = {}

    # --- data access (the conversation service scopes everything by ``user``) -----------------

    async def _open(self, user: User, conversation_id: int) -> OpenedConversation:
        transcript = await self.ctx.conversations.transcript(user, conversation_id=conversation_id)
        # Rendering a long history is CPU work: it stays off the event loop that carries every stream.
        return await asyncio.to_thread(_opened, transcript)

    async def _choices(self, user: User, search: str = "") -> list[tuple[str, int]]:
        return [(c.title, c.id) for c in await self.ctx.conversations.find(user, search=(search or "")[:200])]

    async def _turn_settings(self, user: User, cid: int | None, panel: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
        """The settings panel checked, and saved with the conversation (when there is one yet) before a turn."""
        prompt, sampling = chat_settings(self.settings, *panel)
        if cid is not None:
            await self.ctx.conversations.save_settings(
                user, conversation_id=cid, system_prompt=prompt, sampling=sampling
            )
        return prompt, sampling

    # --- output builders --------------------------------------------------------------------------

    def _settings_values(self, conversation: Conversation | None) -> Updates:
        sampling = {**self.defaults.model_dump(), **(conversation.sampling if conversation else {})}
        prompt = conversation.system_prompt if conversation else self.settings.system_prompt
        return {
            self.system_prompt: prompt,
            self.temperature: sampling["temperature"],
            self.top_p: sampling["top_p"],
            self.top_k: sampling["top_k"],
            self.max_new_tokens: sampling["max_new_tokens"],
        }

    def _opened(self, opened: OpenedConversation | None) -> Updates:
        """Everything that changes when a conversation is shown (or, with None, a new empty chat)."""
        conversation = opened.conversation if opened else None
        cid = conversation.id if conversation else None
        updates: Updates = {
            self.chatbot: gr.update(
                value=opened.view.messages if opened else [],
                feedback_value=opened.feedback if opened else [],
            ),
            self.conversation_id: cid,
            self.title_box: conversation.title if conversation else "",
            self.heading: f"### {safe_markdown(conversation.title)}" if conversation else "### New chat",
            self.manage_panel: gr.update(visible=cid is not None),
            self.export_markdown: gr.update(link=export_path(cid, "md") if cid else None),
            self.export_json: gr.update(link=export_path(cid, "json") if cid else None),
            self.report_panel: gr.update(visible=False),
        }
        updates.update(self._settings_values(conversation))
        updates.update(self._idle_buttons())
        return updates

    def _listing(self, choices: list[tuple[str, int]], selected: int | None) -> Updates:
        ids = {cid for _, cid in choices}
        return {self.conversation_list: gr.update(choices=choices, value=selected if selected in ids else None)}

    def _idle_buttons(self) -> Updates:
        return {self.send_button: gr.update(visible=True), self.stop_button: gr.update(visible=False)}

    def _busy_buttons(self) -> Updates:
        return {self.send_button: gr.update(visible=False), self.stop_button: gr.update(visible=True)}

    # --- handlers: navigation ---------------------------------------------------------------------

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
            raise _error(exc) from None
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
            raise _error(exc) from None
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
            raise _error(exc) from None
        if cid is None:
            return {self.status: ""}
        try:
            await self.ctx.conversations.delete(user, conversation_id=cid)
        except StoreError as exc:
            raise _error(exc) from None
        updates = self._opened(None)
        updates.update(self._listing(await self._choices(user), None))
        updates[self.status] = "Conversation deleted."
        return updates

    # --- handlers: turns ----------------------------------------------------------------------------

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
            raise _error(exc) from None
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
            raise _error(exc) from None

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
            raise _error(exc) from None

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
                raise _error(exc, "Limit reached") from None
            except StoreError as exc:
                raise _error(exc) from None
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
            raise _error(exc) from None
        updates.update(self._opened(opened))
        return updates

    # --- handlers: feedback and reports -----------------------------------------------------------

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
            raise _error(exc) from None
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
            raise _error(exc) from None
        return {
            self.report_panel: gr.update(visible=False),
            self.report_message_id: None,
            self.report_reason: "",
            self.status: REPORTED_STATUS,
        }

    async def close_report(self, request: gr.Request) -> Updates:
        await acting_user(self.ctx, request)
        return {self.report_panel: gr.update(visible=False), self.report_message_id: None, self.report_reason: ""}

    # --- layout and wiring --------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        limit = self.settings.max_output_tokens_limit
        with gr.Blocks(title="GuardChat", fill_height=True, fill_width=True) as demo:
            self.conversation_id = gr.Number(value=None, precision=0, visible=False, elem_id="gc-conversation-id")
            self.report_message_id = gr.Number(value=None, precision=0, visible=False, elem_id="gc-report-message-id")

            with gr.Sidebar(width=300, elem_id="gc-sidebar"):
                gr.Markdown("## GuardChat", elem_id="gc-brand")
                self.account = gr.Markdown(elem_id="gc-account")
                self.new_button = gr.Button("+ New chat", variant="primary", elem_id="gc-new-chat")
                self.search = gr.Textbox(
                    placeholder="Search titles and messages", show_label=False, elem_id="gc-search", max_lines=1
                )
                self.conversation_list = gr.Radio(
                    choices=[], label="Conversations", elem_id="gc-conversations", container=False
                )
                with gr.Column(visible=False, elem_id="gc-manage", variant="panel") as self.manage_panel:
                    gr.Markdown("**This chat**", elem_classes="gc-hint")
                    self.title_box = gr.Textbox(
                        show_label=False, placeholder="Title", max_lines=1, container=False, elem_id="gc-title"
                    )
                    with gr.Row():
                        self.rename_button = gr.Button("Rename", size="sm", min_width=60, elem_id="gc-rename")
                        self.delete_button = gr.Button(
                            "Delete", size="sm", min_width=60, variant="stop", elem_id="gc-delete"
                        )
                    with gr.Row():
                        self.export_markdown = gr.Button("Export .md", size="sm", min_width=60, elem_id="gc-export-md")
                        self.export_json = gr.Button("Export .json", size="sm", min_width=60, elem_id="gc-export-json")

            with gr.Column(elem_id="gc-main", scale=1):
                with gr.Row(equal_height=True, elem_id="gc-header"):
                    self.heading = gr.Markdown("### New chat", elem_id="gc-heading")
                    self.settings_button = gr.Button(
                        "Settings", size="sm", scale=0, min_width=90, elem_id="gc-open-settings"
                    )
                self.chatbot = gr.Chatbot(
                    elem_id="gc-chat",
                    show_label=False,
                    scale=1,
                    height="100%",
                    min_height=360,
                    editable="user",
                    sanitize_html=True,
                    render_markdown=True,
                    allow_tags=False,
                    latex_delimiters=[],
                    buttons=["copy"],
                    feedback_options=("Like", "Dislike", REPORT_OPTION),
                    placeholder="### How can I help?\nMessages are checked by safety rails before the model sees "
                    "them, and replies before you do.",
                    layout="bubble",
                )
                with gr.Group(visible=False, elem_id="gc-report") as self.report_panel:
                    self.report_reason = gr.Textbox(
                        label="Report this reply: what is wrong with it?", lines=2, elem_id="gc-report-reason"
                    )
                    with gr.Row():
                        self.report_submit = gr.Button(
                            "Send report", variant="stop", size="sm", elem_id="gc-report-send"
                        )
                        self.report_cancel = gr.Button("Cancel", size="sm", elem_id="gc-report-cancel")
                self.status = gr.Markdown(elem_id="gc-status")
                with gr.Row(equal_height=True, elem_id="gc-composer"):
                    self.textbox = gr.Textbox(
                        placeholder="Message GuardChat… (Enter to send, Shift+Enter for a new line)",
                        show_label=False,
                        lines=1,
                        max_lines=8,
                        scale=8,
                        elem_id="gc-input",
                        autofocus=True,
                        interactive=False,  # until load_page has run
                    )
                    self.send_button = gr.Button(
                        "Send", variant="primary", scale=1, min_width=90, elem_id="gc-send", interactive=False
                    )
                    self.stop_button = gr.Button(
                        "■ Stop", variant="stop", scale=1, min_width=90, visible=False, elem_id="gc-stop"
                    )
            with gr.Sidebar(label="Chat settings", open=False, position="right", width=320, elem_id="gc-settings"):
                gr.Markdown("### Chat settings")
                self.system_prompt = gr.Textbox(
                    label="System prompt", lines=4, value=self.settings.system_prompt, elem_id="gc-system-prompt"
                )
                self.temperature = gr.Slider(
                    0.0, 2.0, value=self.defaults.temperature, step=0.05, label="Temperature", elem_id="gc-temperature"
                )
                self.top_p = gr.Slider(
                    0.05, 1.0, value=self.defaults.top_p, step=0.05, label="Top p", elem_id="gc-top-p"
                )
                self.top_k = gr.Slider(
                    0, 1000, value=self.defaults.top_k, step=1, label="Top k (0 = off)", elem_id="gc-top-k"
                )
                self.max_new_tokens = gr.Slider(
                    1,
                    limit,
                    value=self.defaults.max_new_tokens,
                    step=1,
                    label="Max new tokens",
                    elem_id="gc-max-new-tokens",
                )
                gr.Markdown("Saved with this chat when you send.", elem_classes="gc-hint")

            self._wire(demo)
        return demo

    def _wire(self, demo: gr.Blocks) -> None:
        buttons = [self.send_button, self.stop_button]
        opened_outputs: list[Block] = [
            self.chatbot,
            self.conversation_id,
            self.title_box,
            self.heading,
            self.manage_panel,
            self.export_markdown,
            self.export_json,
            self.report_panel,
            self.system_prompt,
            self.temperature,
            self.top_p,
            self.top_k,
            self.max_new_tokens,
            *buttons,
        ]
        turn_outputs = [*opened_outputs, self.conversation_list, self.status, self.textbox]
        settings_inputs = [self.system_prompt, self.temperature, self.top_p, self.top_k, self.max_new_tokens]
        report_outputs: list[Block] = [self.report_panel, self.report_message_id, self.report_reason]

        def wire(trigger: Any, name: str, **kwargs: Any) -> Any:
            """``trigger`` is a listener (``button.click``, ``event.then``) or a list of them for gr.on."""
            assert name in EVENT_HANDLERS, name
            kwargs.update(api_name=name, api_visibility="undocumented")
            if isinstance(trigger, list):
                return gr.on(trigger, getattr(self, name), **kwargs)
            return trigger(getattr(self, name), **kwargs)

        send = wire(
            [self.textbox.submit, self.send_button.click],
            "send_message",
            inputs=[self.textbox, self.conversation_id, *settings_inputs],
            outputs=turn_outputs,
            show_progress="hidden",
        )
        regenerate = wire(
            self.chatbot.retry,
            "regenerate_reply",
            inputs=[self.conversation_id, *settings_inputs],
            outputs=turn_outputs,
            show_progress="hidden",
        )
        edit = wire(
            self.chatbot.edit,
            "edit_last_message",
            inputs=[self.conversation_id, *settings_inputs],
            outputs=turn_outputs,
            show_progress="hidden",
        )
        turns = [send, regenerate, edit]
        stop = self.stop_button.click(None, cancels=turns)
        wire(stop.then, "after_stop", inputs=[self.conversation_id], outputs=[*opened_outputs, self.status])

        load = wire(
            demo.load,
            "load_page",
            inputs=[self.conversation_id],
            outputs=[*opened_outputs, self.account, self.status, self.conversation_list, self.textbox],
            js=READ_CONVERSATION_FROM_URL_JS,
        )
        # A link to a conversation that did not open must not stay in the address bar.
        load.then(None, inputs=[self.conversation_id], js=WRITE_CONVERSATION_TO_URL_JS)
        # Leaving a conversation stops its running reply (kept as interrupted), so its stream cannot
        # keep writing into the conversation shown next.
        wire(
            self.new_button.click,
            "new_chat",
            outputs=[*opened_outputs, self.conversation_list, self.status, self.search],
            cancels=turns,
        )
        wire(
            self.conversation_list.input,
            "open_conversation",
            inputs=[self.conversation_list],
            outputs=[*opened_outputs, self.status],
            cancels=turns,
        )
        wire(
            self.delete_button.click,
            "delete_conversation",
            inputs=[self.conversation_id],
            outputs=[*opened_outputs, self.conversation_list, self.status],
            js=CONFIRM_DELETE_JS,
            cancels=turns,
        )
        wire(
            self.search.input,
            "search_conversations",
            inputs=[self.search, self.conversation_id],
            outputs=[self.conversation_list],
            trigger_mode="always_last",
            show_progress="hidden",
        )
        wire(
            self.rename_button.click,
            "rename_conversation",
            inputs=[self.conversation_id, self.title_box, self.search],
            outputs=[self.conversation_list, self.title_box, self.heading, self.status],
        )
        wire(
            self.chatbot.like,
            "give_feedback",
            inputs=[self.conversation_id],
            outputs=[*report_outputs, self.status],
            show_progress="hidden",
        )
        wire(
            self.report_submit.click,
            "report_reply",
            inputs=[self.report_message_id, self.report_reason],
            outputs=[*report_outputs, self.status],
        )
        wire(self.report_cancel.click, "close_report", outputs=report_outputs)
        self.conversation_id.change(None, inputs=[self.conversation_id], js=WRITE_CONVERSATION_TO_URL_JS)
        self.settings_button.click(None, js=TOGGLE_SETTINGS_JS)


def build_chat_page(ctx: AppContext) -> tuple[ChatPage, gr.Blocks]:
    page = ChatPage(ctx)
    return page, page.build()
