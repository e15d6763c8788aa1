"""The moderator console's layout and event wiring; the handlers come from one class per tab."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import gradio as gr

from webapp.context import AppContext
from webapp.ui.assets import script
from webapp.ui.moderation.audit import AuditTab
from webapp.ui.moderation.base import BULK_HANDLERS, FLAG_ACTION_HANDLERS, MODERATION_HANDLERS
from webapp.ui.moderation.filters import QueueForm
from webapp.ui.moderation.flag import FlagTab
from webapp.ui.moderation.queue import QueueTab
from webapp.ui.moderation.stats import StatsTab

# The open flag lives in the URL (?flag=ID) so a moderator can share or reload it.
READ_FLAG_FROM_URL_JS = script("read-id-from-url", param="flag")
WRITE_FLAG_TO_URL_JS = script("write-id-to-url", param="flag", scroll_to="gc-flagged-turn")
CONFIRM_BAN_JS = script("confirm-ban")


class ModerationPage(QueueTab, FlagTab, AuditTab, StatsTab):
    """Builds the Blocks and holds the handlers; one instance per app process."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        for name, action in FLAG_ACTION_HANDLERS.items():
            setattr(self, name, self._flag_action_handler(action))
        for name, action in BULK_HANDLERS.items():
            setattr(self, name, self._bulk_handler(action))

    # --- layout ---------------------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        with gr.Blocks(title="Moderation · GuardChat", fill_width=True) as demo:
            self.applied = gr.State(asdict(QueueForm()))
            self.page_stack = gr.State([None])
            self.page_next = gr.State(None)
            self.page_versions = gr.State({})
            self.audit_state = gr.State(None)
            self.flag_id = gr.Number(value=None, precision=0, visible=False, elem_id="gc-mod-flag-id")
            self.flag_version = gr.Number(value=None, precision=0, visible=False)

            with gr.Row(elem_id="gc-mod-header"):
                gr.Markdown("# GuardChat moderation", elem_id="gc-mod-title")
                self.account = gr.Markdown(elem_id="gc-mod-account")

            with gr.Tabs(selected="queue") as self.tabs:
                with gr.Tab("Queue", id="queue", elem_id="gc-mod-tab-queue"):
                    self._build_queue()
                with gr.Tab("Flag", id="flag", elem_id="gc-mod-tab-flag"):
                    self._build_flag()
                with gr.Tab("Audit log", id="audit", elem_id="gc-mod-tab-audit") as self.audit_tab:
                    self._build_audit()
                with gr.Tab("Stats", id="stats", elem_id="gc-mod-tab-stats") as self.stats_tab:
                    self._build_stats()
            self._wire(demo)
        return demo

    # --- wiring ---------------------------------------------------------------------------------------

    def _wire(self, demo: gr.Blocks) -> None:
        filters = [
            self.status,
            self.source,
            self.rail,
            self.user,
            self.since,
            self.until,
            self.text,
            self.assigned,
            self.sort,
        ]
        queue_out = [
            self.queue_table,
            self.summary,
            self.page_stack,
            self.page_next,
            self.page_versions,
            self.ticked,
            self.applied,
            self.prev_button,
            self.next_button,
            self.export_csv,
            self.export_jsonl,
        ]
        flag_out = [
            self.detail,
            self.flag_id,
            self.flag_version,
            self.open_id,
            self.action_result,
            self.tabs,
            self.ban_button,
            self.unban_button,
            *self.action_buttons.values(),
        ]
        common: dict[str, Any] = {"api_visibility": "undocumented"}

        def wire(trigger: Any, name: str, **kwargs: Any) -> Any:
            """One event per handler (several triggers share it), so each handler has one API name."""
            assert name in MODERATION_HANDLERS, name
            if isinstance(trigger, list):
                return gr.on(trigger, getattr(self, name), api_name=name, **common, **kwargs)
            return trigger(getattr(self, name), api_name=name, **common, **kwargs)

        wire(
            demo.load,
            "load_page",
            inputs=[self.flag_id],
            outputs=[self.account, self.rail, *queue_out, *flag_out],
            js=READ_FLAG_FROM_URL_JS,
        )
        wire(
            [self.apply_button.click, self.text.submit, self.user.submit],
            "search_queue",
            inputs=filters,
            outputs=queue_out,
        )
        wire(
            self.next_button.click,
            "next_page",
            inputs=[self.applied, self.page_stack, self.page_next],
            outputs=queue_out,
        )
        wire(self.prev_button.click, "previous_page", inputs=[self.applied, self.page_stack], outputs=queue_out)
        wire(self.queue_table.select, "open_from_queue", outputs=flag_out)
        wire([self.open_button.click, self.open_id.submit], "open_flag", inputs=[self.open_id], outputs=flag_out)
        after_action = [*flag_out, *queue_out, self.note]
        for name, button in self.action_buttons.items():
            wire(
                button.click,
                name,
                inputs=[self.flag_id, self.flag_version, self.note, self.applied, self.page_stack],
                outputs=after_action,
            )
        account_inputs = [self.flag_id, self.note, self.applied, self.page_stack]
        wire(self.ban_button.click, "ban_author", inputs=account_inputs, outputs=after_action, js=CONFIRM_BAN_JS)
        wire(self.unban_button.click, "unban_author", inputs=account_inputs, outputs=after_action)
        for name, button in self.bulk_buttons.items():
            wire(
                button.click,
                name,
                inputs=[self.ticked, self.bulk_note, self.page_versions, self.applied, self.page_stack],
                outputs=[*queue_out, self.bulk_result, self.bulk_note],
            )
        audit_inputs = [self.audit_moderator, self.audit_action, self.audit_since, self.audit_until]
        audit_out = [self.audit_table, self.audit_state, self.audit_older, self.audit_summary]
        wire([self.audit_apply.click, self.audit_tab.select], "search_audit", inputs=audit_inputs, outputs=audit_out)
        wire(self.audit_older.click, "older_audit", inputs=[self.audit_state], outputs=audit_out)
        stats_out = [
            self.stats_summary,
            self.flags_plot,
            self.rate_plot,
            self.rails_plot,
            self.users_table,
            self.quality_table,
            self.precision_plot,
            self.thresholds_table,
        ]
        wire(
            [self.stats_tab.select, self.stats_refresh.click, self.stats_days.change],
            "load_stats",
            inputs=[self.stats_days],
            outputs=stats_out,
        )
        wire(self.back_button.click, "show_queue", outputs=[self.tabs])
        wire(self.tick_button.click, "tick_page", inputs=[self.page_versions, self.ticked], outputs=[self.ticked])
        self.flag_id.change(None, inputs=[self.flag_id], js=WRITE_FLAG_TO_URL_JS)


def build_moderation_page(ctx: AppContext) -> gr.Blocks:
    return ModerationPage(ctx).build()
