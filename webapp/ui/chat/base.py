"""The chat page's shared state: its components, the conversation shown, and the updates every panel sends."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.blocks import Block

from webapp.chat.export import export_path
from webapp.context import AppContext
from webapp.llm.params import GenerationParams
from webapp.services.accounts import User
from webapp.services.conversations import Conversation, Transcript
from webapp.ui.chat.inputs import chat_settings
from webapp.ui.rendering import ChatView, render_messages, safe_markdown

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


Updates = dict[Block, Any]  # component → new value or gr.update(...)
REPORT_OPTION = "Report"


@dataclass(frozen=True)
class OpenedConversation:
    conversation: Conversation
    view: ChatView
    feedback: list[str | None]
    streaming: bool  # a reply is still being written (or its cancelled turn is still saving it)


def opened_view(transcript: Transcript) -> OpenedConversation:
    messages = transcript.messages
    feedback: list[str | None] = [
        None if m.vote is None else ("Like" if m.vote > 0 else "Dislike") for m in messages if m.role == "assistant"
    ]
    streaming = any(m.status in ("pending", "streaming") for m in messages)
    return OpenedConversation(transcript.conversation, render_messages(messages), feedback, streaming)


def page_error(exc: Exception, title: str = "Not possible") -> gr.Error:
    return gr.Error(str(exc), title=title)


class ChatPageBase:
    """The components (built in ``page.ChatPage.build``) and the helpers every panel's handlers share."""

    conversation_id: gr.Number
    report_message_id: gr.Number
    account: gr.Markdown
    search: gr.Textbox
    conversation_list: gr.Radio
    manage_panel: gr.Column
    title_box: gr.Textbox
    export_markdown: gr.Button
    export_json: gr.Button
    heading: gr.Markdown
    chatbot: gr.Chatbot
    report_panel: gr.Group
    report_reason: gr.Textbox
    status: gr.Markdown
    textbox: gr.Textbox
    send_button: gr.Button
    stop_button: gr.Button
    system_prompt: gr.Textbox
    temperature: gr.Slider
    top_p: gr.Slider
    top_k: gr.Slider
    max_new_tokens: gr.Slider

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
        return await asyncio.to_thread(opened_view, transcript)

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
