"""The chat page's layout and event wiring; the handlers come from one class per panel."""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.blocks import Block

from webapp.context import AppContext
from webapp.ui.assets import script
from webapp.ui.chat.base import EVENT_HANDLERS, REPORT_OPTION
from webapp.ui.chat.conversations import ConversationHandlers
from webapp.ui.chat.feedback import FeedbackHandlers
from webapp.ui.chat.turns import TurnHandlers

# The open conversation lives in the URL (?c=ID), so a reload shows it again.
READ_CONVERSATION_FROM_URL_JS = script("read-id-from-url", param="c")
WRITE_CONVERSATION_TO_URL_JS = script("write-id-to-url", param="c", scroll_to="")
CONFIRM_DELETE_JS = script("confirm-delete")
TOGGLE_SETTINGS_JS = script("toggle-settings")


class ChatPage(ConversationHandlers, TurnHandlers, FeedbackHandlers):
    """Builds the Blocks and holds the handlers; one instance per app process."""

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
