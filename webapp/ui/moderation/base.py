"""What every tab of the moderator console shares: handler names, the components, the queue and the open flag."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from typing import Any, Literal

import gradio as gr
from gradio.blocks import Block

from webapp.context import AppContext
from webapp.services.accounts import STAFF_ONLY, User
from webapp.services.errors import InvalidInputError, StoreError
from webapp.services.moderation import FlagDetail
from webapp.ui.moderation.filters import QueueForm
from webapp.ui.moderation.render import flag_detail_html, queue_rows
from webapp.ui.rendering import safe_markdown
from webapp.ui.session import acting_user

MODERATION_PATH = "/moderation"
PAGE_SIZE = 50
AUDIT_PAGE_SIZE = 100
FLAG_ACTION_HANDLERS = {
    "confirm_flag": "confirm",
    "dismiss_flag": "dismiss",
    "escalate_flag": "escalate",
    "assign_flag": "assign",
    "unassign_flag": "unassign",
}
BULK_HANDLERS = {
    "bulk_confirm": "confirm",
    "bulk_dismiss": "dismiss",
    "bulk_escalate": "escalate",
    "bulk_assign": "assign",
}
# Every Gradio event handler of this page, by name (its method, and its api_name).
MODERATION_HANDLERS: tuple[str, ...] = (
    "load_page",
    "search_queue",
    "next_page",
    "previous_page",
    "open_from_queue",
    "open_flag",
    "show_queue",
    "tick_page",
    *FLAG_ACTION_HANDLERS,
    "ban_author",
    "unban_author",
    *BULK_HANDLERS,
    "search_audit",
    "older_audit",
    "load_stats",
)

Updates = dict[Block, Any]
ButtonVariant = Literal["primary", "secondary", "stop"]
Handler = Callable[..., Coroutine[Any, Any, Updates]]
AuthorChange = Callable[..., Awaitable[str]]  # Moderation.ban_author / unban_author


class NotStaffError(gr.Error):
    """A signed-in user who is not a moderator called a moderation endpoint."""

    def __init__(self) -> None:
        super().__init__(STAFF_ONLY, title="Not allowed")


def warning(text: str) -> str:
    return f"⚠ {safe_markdown(text)}"


def parse_id(value: Any, what: str = "flag number") -> int | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} {value!r} is not a number") from None
    if not number.is_integer() or number < 1:
        raise InvalidInputError(f"{what} {value!r} is not a whole positive number")
    return int(number)


def walked_pages(value: Any) -> list[str | None]:
    """The cursors of the pages walked so far (server-side state; the first page has none)."""
    if isinstance(value, list) and value and all(c is None or isinstance(c, str) for c in value):
        return value
    return [None]


def queue_form(value: Any) -> QueueForm:
    return QueueForm(**value) if isinstance(value, dict) else QueueForm()


class ModerationPageBase:
    """The acting moderator, and the two views other tabs refresh: the queue and the open flag."""

    # Components, built by each tab's ``_build_*`` in ``ModerationPage.build``; handlers of any tab update them.
    applied: gr.State
    page_stack: gr.State
    page_next: gr.State
    page_versions: gr.State
    audit_state: gr.State
    flag_id: gr.Number
    flag_version: gr.Number
    account: gr.Markdown
    tabs: gr.Tabs
    audit_tab: gr.Tab
    stats_tab: gr.Tab
    status: gr.Dropdown
    source: gr.Dropdown
    rail: gr.Dropdown
    user: gr.Textbox
    since: gr.Textbox
    until: gr.Textbox
    text: gr.Textbox
    assigned: gr.Dropdown
    sort: gr.Dropdown
    apply_button: gr.Button
    summary: gr.Markdown
    export_csv: gr.Button
    export_jsonl: gr.Button
    queue_table: gr.Dataframe
    prev_button: gr.Button
    next_button: gr.Button
    ticked: gr.CheckboxGroup
    tick_button: gr.Button
    bulk_note: gr.Textbox
    bulk_buttons: dict[str, gr.Button]
    bulk_result: gr.Markdown
    back_button: gr.Button
    open_id: gr.Textbox
    open_button: gr.Button
    detail: gr.HTML
    note: gr.Textbox
    action_buttons: dict[str, gr.Button]
    ban_button: gr.Button
    unban_button: gr.Button
    action_result: gr.Markdown
    audit_moderator: gr.Textbox
    audit_action: gr.Dropdown
    audit_since: gr.Textbox
    audit_until: gr.Textbox
    audit_apply: gr.Button
    audit_summary: gr.Markdown
    audit_table: gr.Dataframe
    audit_older: gr.Button
    stats_days: gr.Dropdown
    stats_refresh: gr.Button
    stats_summary: gr.Markdown
    flags_plot: gr.BarPlot
    rate_plot: gr.LinePlot
    rails_plot: gr.BarPlot
    users_table: gr.Dataframe
    quality_table: gr.Dataframe
    precision_plot: gr.LinePlot
    thresholds_table: gr.Dataframe

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def _staff(self, request: gr.Request | None) -> User:
        user = await acting_user(self.ctx, request)
        if not user.is_moderator:
            raise NotStaffError()
        return user

    # --- the queue ------------------------------------------------------------------------------------

    async def _queue(self, actor: User, form: QueueForm, stack: list[str | None]) -> Updates:
        """The page at the top of ``stack`` for ``form``, and everything that depends on it."""
        page, total = await self.ctx.moderation.queue(
            actor, filters=form.to_filter(), sort=form.sort, after=stack[-1], limit=PAGE_SIZE
        )
        first = (len(stack) - 1) * PAGE_SIZE + 1
        shown = f" · page {len(stack)} · showing {first}–{first + len(page.items) - 1}" if page.items else ""
        summary = f"**{total:,}** flag{'s' if total != 1 else ''} match{'es' if total == 1 else ''}{shown}"
        query = form.query_string()
        suffix = f"?{query}" if query else ""
        return {
            self.queue_table: gr.update(value=queue_rows(page.items)),
            self.summary: summary,
            self.page_stack: stack,
            self.page_next: page.next_cursor,
            self.page_versions: {item.id: item.version for item in page.items},
            self.ticked: gr.update(choices=[(f"#{item.id}", item.id) for item in page.items], value=[]),
            self.applied: asdict(form),
            self.prev_button: gr.update(interactive=len(stack) > 1),
            self.next_button: gr.update(interactive=page.next_cursor is not None),
            self.export_csv: gr.update(link=f"{MODERATION_PATH}/export.csv{suffix}"),
            self.export_jsonl: gr.update(link=f"{MODERATION_PATH}/export.jsonl{suffix}"),
        }

    # --- one flag -------------------------------------------------------------------------------------

    async def _show_flag(self, actor: User, flag_id: int, result: str = "") -> Updates:
        try:
            detail = await self.ctx.moderation.flag_detail(actor, flag_id=flag_id)
        except StoreError as exc:
            return {self.action_result: warning(str(exc)), self.tabs: gr.Tabs(selected="flag")}
        return {
            self.detail: flag_detail_html(detail),
            self.flag_id: detail.id,
            self.flag_version: detail.version,
            self.open_id: detail.id,
            self.action_result: result,
            self.tabs: gr.Tabs(selected="flag"),
            self.ban_button: gr.update(visible=not detail.user_banned),
            self.unban_button: gr.update(visible=detail.user_banned),
            **self._decision_buttons(detail),
        }

    def _decision_buttons(self, detail: FlagDetail) -> Updates:
        """Only the actions that can still apply are offered (the store refuses the others anyway)."""
        active = detail.status in ("open", "escalated")
        enabled = {
            "confirm_flag": active,
            "dismiss_flag": active,
            "escalate_flag": detail.status == "open",
            "assign_flag": active and detail.assignee is None,
            "unassign_flag": detail.assignee is not None,
        }
        return {self.action_buttons[name]: gr.update(interactive=on) for name, on in enabled.items()}

    async def _after_action(self, actor: User, flag_id: int, result: str, applied: Any, stack: Any) -> Updates:
        updates = await self._show_flag(actor, flag_id, result)
        try:
            updates.update(await self._queue(actor, queue_form(applied), walked_pages(stack)))
        except InvalidInputError:
            pass  # the queue keeps its old rows; the action itself went through
        return updates
