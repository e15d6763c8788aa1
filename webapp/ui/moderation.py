"""The moderator console at /moderation: queue, flag detail with actions, audit log, stats, export.

Every Gradio event is an HTTP endpoint, so every handler starts with ``_staff(request)``: the user is
read from the signed session and must be a moderator or admin *now*. The store functions check the
role again inside their own transaction. ``MODERATION_HANDLERS`` names every handler wired to an
event; tests call each one as a plain user, in process and over HTTP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import gradio as gr
import pandas as pd
from gradio.blocks import Block

from webapp.context import AppContext
from webapp.moderation.guard_quality import thresholds_around
from webapp.services.accounts import STAFF_ONLY, User
from webapp.services.errors import InvalidInputError, StoreError
from webapp.services.moderation import (
    AUDIT_ACTIONS,
    PAST_TENSE,
    AuditFilter,
    FlagDetail,
    RailWeek,
    ThresholdPoint,
)
from webapp.ui.moderation_filters import (
    ANY,
    ANY_RAIL,
    ASSIGNMENT_CHOICES,
    SORT_CHOICES,
    SOURCE_CHOICES,
    STATUS_CHOICES,
    QueueForm,
    day_range,
)
from webapp.ui.moderation_render import (
    AUDIT_HEADERS,
    EMPTY_DETAIL,
    QUEUE_HEADERS,
    QUEUE_TYPES,
    audit_rows,
    flag_detail_html,
    queue_rows,
)
from webapp.ui.moderation_styles import CONFIRM_BAN_JS, READ_FLAG_FROM_URL_JS, WRITE_FLAG_TO_URL_JS
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
STATS_RANGES = [("Last 7 days", 7), ("Last 30 days", 30), ("Last 90 days", 90), ("Last 365 days", 365)]
# The two per-day charts stand side by side: one x axis and one height, so their days line up.
PER_DAY_AXIS: dict[str, Any] = {"x": "day", "x_title": "Day (UTC)", "x_label_angle": -45, "height": 300}

Updates = dict[Block, Any]
ButtonVariant = Literal["primary", "secondary", "stop"]
Handler = Callable[..., Coroutine[Any, Any, Updates]]
AuthorChange = Callable[..., Awaitable[str]]  # Moderation.ban_author / unban_author


class NotStaffError(gr.Error):
    """A signed-in user who is not a moderator called a moderation endpoint."""

    def __init__(self) -> None:
        super().__init__(STAFF_ONLY, title="Not allowed")


def _rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} % ({part}/{whole})" if whole else "— (none yet)"


def _quality_row(week: RailWeek) -> list[Any]:
    return [week.week.isoformat(), week.rail, week.flags, week.confirmed, week.dismissed,
            _rate(week.confirmed, week.confirmed + week.dismissed)]  # fmt: skip


def _threshold_row(rail: str, current: float, point: ThresholdPoint) -> list[Any]:
    marker = " (today)" if abs(point.threshold - current) < 1e-9 else ""
    return [rail, f"{point.threshold:.2f}{marker}", f"{point.caught} of {point.positives}", point.false_refusals,
            _rate(point.caught, point.caught + point.false_refusals), _rate(point.caught, point.positives)]  # fmt: skip


def _warning(text: str) -> str:
    return f"⚠ {safe_markdown(text)}"


def _id(value: Any, what: str = "flag number") -> int | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} {value!r} is not a number") from None
    if not number.is_integer() or number < 1:
        raise InvalidInputError(f"{what} {value!r} is not a whole positive number")
    return int(number)


def _stack(value: Any) -> list[str | None]:
    """The cursors of the pages walked so far (server-side state; the first page has none)."""
    if isinstance(value, list) and value and all(c is None or isinstance(c, str) for c in value):
        return value
    return [None]


def _form(value: Any) -> QueueForm:
    return QueueForm(**value) if isinstance(value, dict) else QueueForm()


class ModerationPage:
    """Builds the Blocks and holds the handlers; one instance per app process."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        for name, action in FLAG_ACTION_HANDLERS.items():
            setattr(self, name, self._flag_action_handler(action))
        for name, action in BULK_HANDLERS.items():
            setattr(self, name, self._bulk_handler(action))

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
            flag_id = _id(flag_in_url)
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
            return {self.summary: _warning(str(exc))}
        return await self._queue(actor, form, [None])

    async def next_page(self, applied: Any, stack: Any, next_cursor: Any, request: gr.Request) -> Updates:
        actor = await self._staff(request)
        if not isinstance(next_cursor, str):
            return {self.summary: gr.update()}
        try:
            return await self._queue(actor, _form(applied), [*_stack(stack), next_cursor])
        except InvalidInputError as exc:
            return {self.summary: _warning(str(exc))}

    async def previous_page(self, applied: Any, stack: Any, request: gr.Request) -> Updates:
        actor = await self._staff(request)
        walked = _stack(stack)
        return await self._queue(actor, _form(applied), walked[:-1] if len(walked) > 1 else walked)

    # --- one flag -------------------------------------------------------------------------------------

    async def _show_flag(self, actor: User, flag_id: int, result: str = "") -> Updates:
        try:
            detail = await self.ctx.moderation.flag_detail(actor, flag_id=flag_id)
        except StoreError as exc:
            return {self.action_result: _warning(str(exc)), self.tabs: gr.Tabs(selected="flag")}
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

    async def open_flag(self, flag_number: Any, request: gr.Request) -> Updates:
        actor = await self._staff(request)
        try:
            flag_id = _id(flag_number)
        except InvalidInputError as exc:
            return {self.action_result: _warning(str(exc))}
        if flag_id is None:
            return {self.action_result: _warning("type a flag number first")}
        return await self._show_flag(actor, flag_id)

    async def open_from_queue(self, selected: gr.SelectData, request: gr.Request) -> Updates:
        """A click anywhere on a queue row opens that flag (its number is the row's first cell)."""
        actor = await self._staff(request)
        row = selected.row_value if isinstance(selected.row_value, list | tuple) else None
        if not row:
            return {self.action_result: gr.update()}
        try:
            flag_id = _id(row[0])
        except InvalidInputError:
            return {self.action_result: gr.update()}
        return {self.action_result: gr.update()} if flag_id is None else await self._show_flag(actor, flag_id)

    async def tick_page(self, versions: Any, ticked: Any, request: gr.Request) -> Updates:
        """Tick every flag on the page, or untick them all when they already are."""
        await self._staff(request)
        on_page = [int(k) for k in versions] if isinstance(versions, dict) else []
        all_ticked = isinstance(ticked, list) and set(on_page) <= set(ticked)
        return {self.ticked: [] if all_ticked else on_page}

    async def show_queue(self, request: gr.Request) -> Updates:
        await self._staff(request)
        return {self.tabs: gr.Tabs(selected="queue")}

    async def _after_action(self, actor: User, flag_id: int, result: str, applied: Any, stack: Any) -> Updates:
        updates = await self._show_flag(actor, flag_id, result)
        try:
            updates.update(await self._queue(actor, _form(applied), _stack(stack)))
        except InvalidInputError:
            pass  # the queue keeps its old rows; the action itself went through
        return updates

    async def _act_on_open_flag(
        self,
        request: gr.Request,
        flag_id: Any,
        applied: Any,
        stack: Any,
        if_none: Any,
        act: Callable[[User, int], Awaitable[str]],
    ) -> Updates:
        """Run ``act`` on the open flag, then show the flag and the queue again with what it says it did."""
        actor = await self._staff(request)
        try:
            fid = _id(flag_id)
        except InvalidInputError as exc:
            return {self.action_result: _warning(str(exc))}
        if fid is None:
            return {self.action_result: if_none}
        try:
            done = await act(actor, fid)
        except StoreError as exc:
            return await self._after_action(actor, fid, _warning(str(exc)), applied, stack)
        updates = await self._after_action(actor, fid, done, applied, stack)
        updates[self.note] = ""
        return updates

    def _flag_action_handler(self, action: str) -> Handler:
        async def handler(
            flag_id: Any, version: Any, note: Any, applied: Any, stack: Any, request: gr.Request
        ) -> Updates:
            async def act(actor: User, fid: int) -> str:
                await self.ctx.moderation.act_on_flag(
                    actor,
                    flag_id=fid,
                    action=action,
                    note=note if isinstance(note, str) else "",
                    expected_version=_id(version, "flag version"),
                )
                return f"✓ Flag #{fid} {PAST_TENSE[action]}."

            return await self._act_on_open_flag(request, flag_id, applied, stack, _warning("open a flag first"), act)

        handler.__name__ = f"{action}_flag"
        return handler

    async def _account_action(
        self, change: AuthorChange, verb: str, flag_id: Any, note: Any, applied: Any, stack: Any, request: gr.Request
    ) -> Updates:
        async def act(actor: User, fid: int) -> str:
            username = await change(actor, flag_id=fid, note=note if isinstance(note, str) else "")
            return f"✓ {safe_markdown(username)} {verb}."

        # No flag open, or the moderator cancelled the confirmation: nothing to say.
        return await self._act_on_open_flag(request, flag_id, applied, stack, gr.update(), act)

    async def ban_author(self, flag_id: Any, note: Any, applied: Any, stack: Any, request: gr.Request) -> Updates:
        return await self._account_action(
            self.ctx.moderation.ban_author, "banned", flag_id, note, applied, stack, request
        )

    async def unban_author(self, flag_id: Any, note: Any, applied: Any, stack: Any, request: gr.Request) -> Updates:
        return await self._account_action(
            self.ctx.moderation.unban_author, "unbanned", flag_id, note, applied, stack, request
        )

    def _bulk_handler(self, action: str) -> Handler:
        async def handler(
            ticked: Any, note: Any, versions: Any, applied: Any, stack: Any, request: gr.Request
        ) -> Updates:
            actor = await self._staff(request)
            try:
                ids = [i for i in (_id(v) for v in (ticked if isinstance(ticked, list) else [])) if i is not None]
            except InvalidInputError as exc:
                return {self.bulk_result: _warning(str(exc))}
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
                return {self.bulk_result: _warning(str(exc))}
            lines = []
            if outcome.done:
                done = len(outcome.done)
                lines.append(f"✓ {done} flag{'s' if done != 1 else ''} {PAST_TENSE[action]}.")
            lines += [_warning(reason) for reason in outcome.refused.values()]
            updates = await self._queue(actor, _form(applied), _stack(stack))
            updates[self.bulk_result] = "\n\n".join(lines)
            updates[self.bulk_note] = ""
            return updates

        handler.__name__ = f"bulk_{action}"
        return handler

    # --- audit log and stats --------------------------------------------------------------------------

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
            return {self.audit_summary: _warning(str(exc))}
        return await self._audit(actor, filters, None)

    async def older_audit(self, state: Any, request: gr.Request) -> Updates:
        actor = await self._staff(request)
        if not isinstance(state, dict) or not isinstance(state.get("filters"), AuditFilter):
            return await self._audit(actor, AuditFilter(), None)
        return await self._audit(actor, state["filters"], state.get("before"))

    async def load_stats(self, days: Any, request: gr.Request) -> Updates:
        actor = await self._staff(request)
        span = days if isinstance(days, int) and 1 <= days <= 366 else 30
        until = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        stats = await self.ctx.moderation.stats(actor, since=until - timedelta(days=span), until=until)
        per_day = pd.DataFrame(
            [{"day": d.day.isoformat(), "rail": d.label, "flags": d.count} for d in stats.flags_per_day],
            columns=["day", "rail", "flags"],
        )
        rate = pd.DataFrame(
            [
                {"day": r.day.isoformat(), "block rate (%)": round(100 * r.rate, 2), "turns": r.turns}
                for r in stats.block_rate
            ],
            columns=["day", "block rate (%)", "turns"],
        )
        rails = pd.DataFrame(stats.top_rails, columns=["rail", "flags"])
        total_flags = sum(d.count for d in stats.flags_per_day)
        turns = sum(r.turns for r in stats.block_rate)
        blocked = sum(r.blocked for r in stats.block_rate)
        summary = (
            f"**{total_flags:,}** flags and **{turns:,}** replies in the last {span} days; "
            f"**{(100 * blocked / turns) if turns else 0:.1f}%** of replies were blocked."
        )
        since = until - timedelta(days=span)
        weeks = await self.ctx.moderation.rail_weeks(actor, since=since, until=until)
        settings = self.ctx.settings
        suggestions: list[tuple[str, float, ThresholdPoint]] = []
        for rail, current in (
            ("check request safety", settings.harmful_request_threshold),
            ("check reply safety", settings.harmful_reply_threshold),
        ):
            points = await self.ctx.moderation.threshold_points(
                actor, rail=rail, thresholds=thresholds_around(current), since=since, until=until
            )
            suggestions += [(rail, current, point) for point in points]
        precision = [
            {"week": w.week.isoformat(), "rail": w.rail, "precision (%)": round(100 * w.precision, 1)}
            for w in weeks
            if w.precision is not None
        ]
        return {
            self.stats_summary: summary,
            self.flags_plot: per_day,
            self.rate_plot: rate,
            self.rails_plot: rails,
            self.users_table: gr.update(value=[list(row) for row in stats.top_users]),
            self.quality_table: gr.update(value=[_quality_row(w) for w in weeks]),
            self.precision_plot: pd.DataFrame(precision, columns=["week", "rail", "precision (%)"]),
            self.thresholds_table: gr.update(value=[_threshold_row(*s) for s in suggestions]),
        }

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

    def _build_flag(self) -> None:
        with gr.Row(elem_id="gc-mod-flag-bar"):
            self.back_button = gr.Button("← Back to the queue", size="sm", scale=0, min_width=170)
            self.open_id = gr.Textbox(
                placeholder="Go to flag #",
                show_label=False,
                container=False,
                max_lines=1,
                scale=0,
                min_width=150,
                elem_id="gc-mod-open-id",
            )
            self.open_button = gr.Button("Open", size="sm", scale=0, min_width=80, elem_id="gc-mod-open")
        with gr.Row():
            with gr.Column(scale=3):
                self.detail = gr.HTML(EMPTY_DETAIL, elem_id="gc-mod-detail")
            with gr.Column(scale=1, min_width=260, elem_id="gc-mod-actions"):
                gr.Markdown("### Decide")
                self.note = gr.Textbox(label="Note (optional, kept in the audit log)", lines=3, elem_id="gc-mod-note")
                decisions: tuple[tuple[str, str, ButtonVariant], ...] = (
                    ("confirm_flag", "Confirm violation", "stop"),
                    ("dismiss_flag", "Dismiss", "primary"),
                    ("escalate_flag", "Escalate", "secondary"),
                )
                self.action_buttons = {
                    name: gr.Button(label, variant=variant, elem_id=f"gc-mod-{name.replace('_', '-')}")
                    for name, label, variant in decisions
                }
                with gr.Row():
                    for name, label in (("assign_flag", "Assign to me"), ("unassign_flag", "Unassign")):
                        self.action_buttons[name] = gr.Button(
                            label, size="sm", elem_id=f"gc-mod-{name.replace('_', '-')}"
                        )
                with gr.Row():
                    self.ban_button = gr.Button("Ban user", size="sm", variant="stop", elem_id="gc-mod-ban")
                    self.unban_button = gr.Button("Unban user", size="sm", visible=False, elem_id="gc-mod-unban")
                self.action_result = gr.Markdown(elem_id="gc-mod-action-result")

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

    def _build_stats(self) -> None:
        with gr.Row():
            self.stats_days = gr.Dropdown(STATS_RANGES, value=30, label="Range", scale=0, min_width=180)
            self.stats_refresh = gr.Button(
                "Refresh", scale=0, min_width=100, elem_classes="gc-inline", elem_id="gc-mod-stats-refresh"
            )
            self.stats_summary = gr.Markdown(elem_id="gc-mod-stats-summary", elem_classes="gc-inline")
        with gr.Row():
            self.flags_plot = gr.BarPlot(
                **PER_DAY_AXIS,
                y="flags",
                color="rail",
                title="Flags per day by rail",
                y_title="Flags",
                elem_id="gc-mod-plot-flags",
            )
            self.rate_plot = gr.LinePlot(
                **PER_DAY_AXIS,
                y="block rate (%)",
                title="Block rate: blocked replies per day",
                y_axis_format=".1f",
                elem_id="gc-mod-plot-rate",
            )
        with gr.Row():
            self.rails_plot = gr.BarPlot(
                x="rail",
                y="flags",
                title="Top rails",
                sort="-y",
                x_label_angle=-20,
                height=280,
                elem_id="gc-mod-plot-rails",
            )
            self.users_table = gr.Dataframe(
                headers=["User", "Confirmed flags", "All flags"],
                type="array",
                interactive=False,
                label="Users with the most confirmed flags",
                elem_id="gc-mod-top-users",
            )
        gr.Markdown(
            "### Guard quality, from moderators' verdicts\nA confirmed block is a hit and a dismissed one a false "
            "refusal; a confirmed user report is a miss. Each rate shows the counts behind it."
        )
        with gr.Column():
            self.quality_table = gr.Dataframe(
                headers=["Week (Mon)", "Rail", "Flags", "Confirmed", "Dismissed", "Measured precision"],
                type="array",
                interactive=False,
                label="Per rail and week",
                elem_id="gc-mod-guard-quality",
            )
            self.precision_plot = gr.LinePlot(
                x="week",
                y="precision (%)",
                color="rail",
                title="Measured precision by rail and week",
                x_title="Week (UTC, Monday)",
                y_axis_format=".0f",
                height=300,
                elem_id="gc-mod-plot-precision",
            )
        self.thresholds_table = gr.Dataframe(
            headers=["Rail", "Threshold", "Caught", "False refusals", "Precision", "Recall"],
            type="array",
            interactive=False,
            label="What moderators' labels imply at thresholds around today's (a suggestion: thresholds stay "
            "settings)",
            elem_id="gc-mod-thresholds",
        )

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
