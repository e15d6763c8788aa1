"""The queue tab: filters, pages, ticking a page, and bulk actions on the ticked flags."""

from __future__ import annotations

from typing import Any

import gradio as gr

from webapp.services.errors import InvalidInputError, StoreError
from webapp.services.moderation import PAST_TENSE
from webapp.ui.moderation.base import (
    ButtonVariant,
    Handler,
    ModerationPageBase,
    Updates,
    parse_id,
    queue_form,
    walked_pages,
    warning,
)
from webapp.ui.moderation.filters import (
    ANY,
    ANY_RAIL,
    ASSIGNMENT_CHOICES,
    SORT_CHOICES,
    SOURCE_CHOICES,
    STATUS_CHOICES,
    QueueForm,
)
from webapp.ui.moderation.render import QUEUE_HEADERS, QUEUE_TYPES
from webapp.ui.rendering import safe_markdown


class QueueTab(ModerationPageBase):
    async def load_page(self, flag_in_url: Any, request: gr.Request) -> Updates:
        actor = await self._staff(request)
        rails = await self.ctx.moderation.known_rails(actor)
        admin = " · [Accounts](/admin)" if actor.role == "admin" else ""
        updates: Updates = {
            self.account: f"**{safe_markdown(actor.username)}** ({actor.role}) · [Chat](/){admin}"
            " · [Sign out](/logout)",
            self.rail: gr.update(choices=[ANY_RAIL, *[(r, r) for r in rails]]),
        }
        updates.update(await self._queue(actor, QueueForm(), [None]))
        try:
            flag_id = parse_id(flag_in_url)
        except InvalidInputError:
            flag_id = None
        if flag_id is not None:
            updates.update(await self._show_flag(actor, flag_id))
        return updates

    async def search_queue(
        self,
        status: Any,
        source: Any,
        rail: Any,
        user: Any,
        since: Any,
        until: Any,
        text: Any,
        assigned: Any,
        sort: Any,
        request: gr.Request,
    ) -> Updates:
        actor = await self._staff(request)
        try:
            form = QueueForm.from_values(status, source, rail, user, since, until, text, assigned, sort)
        except InvalidInputError as exc:
            return {self.summary: warning(str(exc))}
        return await self._queue(actor, form, [None])

    async def next_page(self, applied: Any, stack: Any, next_cursor: Any, request: gr.Request) -> Updates:
        actor = await self._staff(request)
        if not isinstance(next_cursor, str):
            return {self.summary: gr.update()}
        try:
            return await self._queue(actor, queue_form(applied), [*walked_pages(stack), next_cursor])
        except InvalidInputError as exc:
            return {self.summary: warning(str(exc))}

    async def previous_page(self, applied: Any, stack: Any, request: gr.Request) -> Updates:
        actor = await self._staff(request)
        walked = walked_pages(stack)
        return await self._queue(actor, queue_form(applied), walked[:-1] if len(walked) > 1 else walked)

    async def tick_page(self, versions: Any, ticked: Any, request: gr.Request) -> Updates:
        """Tick every flag on the page, or untick them all when they already are."""
        await self._staff(request)
        on_page = [int(k) for k in versions] if isinstance(versions, dict) else []
        all_ticked = isinstance(ticked, list) and set(on_page) <= set(ticked)
        return {self.ticked: [] if all_ticked else on_page}

    async def show_queue(self, request: gr.Request) -> Updates:
        await self._staff(request)
        return {self.tabs: gr.Tabs(selected="queue")}

    def _bulk_handler(self, action: str) -> Handler:
        async def handler(
            ticked: Any, note: Any, versions: Any, applied: Any, stack: Any, request: gr.Request
        ) -> Updates:
            actor = await self._staff(request)
            try:
                ids = [i for i in (parse_id(v) for v in (ticked if isinstance(ticked, list) else [])) if i is not None]
            except InvalidInputError as exc:
                return {self.bulk_result: warning(str(exc))}
            known = versions if isinstance(versions, dict) else {}
            expected = {fid: v for fid, v in ((int(k), v) for k, v in known.items()) if isinstance(v, int)}
            try:
                outcome = await self.ctx.moderation.act_on_flags(
                    actor,
                    flag_ids=ids,
                    action=action,
                    note=note if isinstance(note, str) else "",
                    expected_versions=expected,
                )
            except StoreError as exc:
                return {self.bulk_result: warning(str(exc))}
            lines = []
            if outcome.done:
                done = len(outcome.done)
                lines.append(f"✓ {done} flag{'s' if done != 1 else ''} {PAST_TENSE[action]}.")
            lines += [warning(reason) for reason in outcome.refused.values()]
            updates = await self._queue(actor, queue_form(applied), walked_pages(stack))
            updates[self.bulk_result] = "\n\n".join(lines)
            updates[self.bulk_note] = ""
            return updates

        handler.__name__ = f"bulk_{action}"
        return handler

    def _build_queue(self) -> None:
        with gr.Row(equal_height=True):
            self.status = gr.Dropdown(
                STATUS_CHOICES, value="open", label="Status", elem_id="gc-mod-status", min_width=130
            )
            self.source = gr.Dropdown(SOURCE_CHOICES, value=ANY, label="Source", elem_id="gc-mod-source", min_width=140)
            self.rail = gr.Dropdown(
                [ANY_RAIL], value=ANY, label="Rail", allow_custom_value=True, elem_id="gc-mod-rail", min_width=170
            )
            self.user = gr.Textbox(label="User", placeholder="username", max_lines=1, elem_id="gc-mod-user")
            self.since = gr.Textbox(label="From", placeholder="YYYY-MM-DD", max_lines=1, elem_id="gc-mod-since")
            self.until = gr.Textbox(label="To", placeholder="YYYY-MM-DD", max_lines=1, elem_id="gc-mod-until")
        with gr.Row():
            self.text = gr.Textbox(label="Search excerpts and reasons", max_lines=1, scale=3, elem_id="gc-mod-text")
            self.assigned = gr.Dropdown(
                ASSIGNMENT_CHOICES, value="anyone", label="Assigned", elem_id="gc-mod-assigned", min_width=150
            )
            self.sort = gr.Dropdown(SORT_CHOICES, value="newest", label="Sort", elem_id="gc-mod-sort", min_width=220)
            self.apply_button = gr.Button(
                "Apply filters",
                variant="primary",
                elem_id="gc-mod-apply",
                min_width=160,
                scale=0,
                elem_classes="gc-inline",
            )
        with gr.Row(equal_height=True):
            self.summary = gr.Markdown(elem_id="gc-mod-summary")
            self.export_csv = gr.Button("⬇ CSV", size="sm", min_width=80, elem_id="gc-mod-export-csv", scale=0)
            self.export_jsonl = gr.Button("⬇ JSONL", size="sm", min_width=80, elem_id="gc-mod-export-jsonl", scale=0)
        self.queue_table = gr.Dataframe(
            headers=QUEUE_HEADERS,
            datatype=QUEUE_TYPES,  # type: ignore[arg-type]
            type="array",
            interactive=False,
            column_widths=["5%", "11%", "7%", "9%", "12%", "8%", "33%", "8%", "7%"],
            wrap=True,
            max_height=640,
            show_label=False,
            buttons=[],
            elem_id="gc-mod-queue",
        )
        with gr.Row(equal_height=True):
            self.prev_button = gr.Button("← Previous", size="sm", interactive=False, elem_id="gc-mod-prev")
            self.next_button = gr.Button("Next →", size="sm", interactive=False, elem_id="gc-mod-next")
        with gr.Row(elem_id="gc-mod-tick-row"):
            self.ticked = gr.CheckboxGroup(
                [], label="Tick flags on this page for a bulk action", elem_id="gc-mod-ticked", scale=5
            )
            self.tick_button = gr.Button(
                "Tick / untick all",
                size="sm",
                scale=0,
                min_width=150,
                elem_classes="gc-inline",
                elem_id="gc-mod-tick-all",
            )
        with gr.Row(elem_id="gc-mod-bulk"):
            self.bulk_note = gr.Textbox(
                label="Note for the ticked flags (optional)", max_lines=1, scale=3, elem_id="gc-mod-bulk-note"
            )
            bulk: tuple[tuple[str, str, ButtonVariant], ...] = (
                ("bulk_confirm", "Confirm ticked", "stop"),
                ("bulk_dismiss", "Dismiss ticked", "secondary"),
                ("bulk_escalate", "Escalate ticked", "secondary"),
                ("bulk_assign", "Assign ticked to me", "secondary"),
            )
            self.bulk_buttons = {
                name: gr.Button(
                    label,
                    variant=variant,
                    scale=0,
                    min_width=210,
                    elem_classes="gc-inline",
                    elem_id=f"gc-mod-{name.replace('_', '-')}",
                )
                for name, label, variant in bulk
            }
        self.bulk_result = gr.Markdown(elem_id="gc-mod-bulk-result")
