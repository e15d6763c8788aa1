"""The audit log tab: every moderation action, newest first, filtered and paged."""

from __future__ import annotations

from typing import Any

import gradio as gr

from webapp.services.accounts import User
from webapp.services.errors import InvalidInputError
from webapp.services.moderation import AUDIT_ACTIONS, AuditFilter
from webapp.ui.moderation.base import AUDIT_PAGE_SIZE, ModerationPageBase, Updates, warning
from webapp.ui.moderation.filters import ANY, day_range
from webapp.ui.moderation.render import AUDIT_HEADERS, audit_rows


class AuditTab(ModerationPageBase):
    async def _audit(self, actor: User, filters: AuditFilter, before: Any) -> Updates:
        page = await self.ctx.moderation.audit(actor, filters=filters, before=before, limit=AUDIT_PAGE_SIZE)
        return {
            self.audit_table: gr.update(value=audit_rows(page.entries)),
            self.audit_state: {"filters": filters, "before": page.next_before},
            self.audit_older: gr.update(interactive=page.next_before is not None),
            self.audit_summary: f"{len(page.entries)} action{'s' if len(page.entries) != 1 else ''} shown"
            + (" · more are older" if page.next_before else ""),
        }

    async def search_audit(self, moderator: Any, action: Any, since: Any, until: Any, request: gr.Request) -> Updates:
        actor = await self._staff(request)
        try:
            start, end = day_range(since, until)
            filters = AuditFilter(
                moderator=moderator.strip()[:64] if isinstance(moderator, str) else "",
                action=None if action in (None, "", ANY) else str(action),
                since=start,
                until=end,
            )
        except InvalidInputError as exc:
            return {self.audit_summary: warning(str(exc))}
        return await self._audit(actor, filters, None)

    async def older_audit(self, state: Any, request: gr.Request) -> Updates:
        actor = await self._staff(request)
        if not isinstance(state, dict) or not isinstance(state.get("filters"), AuditFilter):
            return await self._audit(actor, AuditFilter(), None)
        return await self._audit(actor, state["filters"], state.get("before"))

    def _build_audit(self) -> None:
        with gr.Row():
            self.audit_moderator = gr.Textbox(label="Moderator", max_lines=1, elem_id="gc-mod-audit-moderator")
            self.audit_action = gr.Dropdown(
                [("Any action", ANY), *[(a.replace("_", " "), a) for a in AUDIT_ACTIONS]],
                value=ANY,
                label="Action",
                elem_id="gc-mod-audit-action",
            )
            self.audit_since = gr.Textbox(label="From", placeholder="YYYY-MM-DD", max_lines=1)
            self.audit_until = gr.Textbox(label="To", placeholder="YYYY-MM-DD", max_lines=1)
            self.audit_apply = gr.Button(
                "Show",
                variant="primary",
                elem_id="gc-mod-audit-apply",
                min_width=100,
                scale=0,
                elem_classes="gc-inline",
            )
        self.audit_summary = gr.Markdown(elem_id="gc-mod-audit-summary")
        self.audit_table = gr.Dataframe(
            headers=AUDIT_HEADERS,
            type="array",
            interactive=False,
            wrap=True,
            max_height=640,
            show_label=False,
            column_widths=["12%", "10%", "9%", "6%", "10%", "33%", "20%"],
            elem_id="gc-mod-audit",
        )
        self.audit_older = gr.Button("Older →", size="sm", interactive=False, elem_id="gc-mod-audit-older")
