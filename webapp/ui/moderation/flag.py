"""The flag tab: one flag's detail, the decisions on it, and banning or unbanning its author."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import gradio as gr

from webapp.services.accounts import User
from webapp.services.errors import InvalidInputError, StoreError
from webapp.services.moderation import PAST_TENSE
from webapp.ui.moderation.base import (
    AuthorChange,
    ButtonVariant,
    Handler,
    ModerationPageBase,
    Updates,
    parse_id,
    warning,
)
from webapp.ui.moderation.render import EMPTY_DETAIL
from webapp.ui.rendering import safe_markdown


class FlagTab(ModerationPageBase):
    async def open_flag(self, flag_number: Any, request: gr.Request) -> Updates:
        actor = await self._staff(request)
        try:
            flag_id = parse_id(flag_number)
        except InvalidInputError as exc:
            return {self.action_result: warning(str(exc))}
        if flag_id is None:
            return {self.action_result: warning("type a flag number first")}
        return await self._show_flag(actor, flag_id)

    async def open_from_queue(self, selected: gr.SelectData, request: gr.Request) -> Updates:
        """A click anywhere on a queue row opens that flag (its number is the row's first cell)."""
        actor = await self._staff(request)
        row = selected.row_value if isinstance(selected.row_value, list | tuple) else None
        if not row:
            return {self.action_result: gr.update()}
        try:
            flag_id = parse_id(row[0])
        except InvalidInputError:
            return {self.action_result: gr.update()}
        return {self.action_result: gr.update()} if flag_id is None else await self._show_flag(actor, flag_id)

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
            fid = parse_id(flag_id)
        except InvalidInputError as exc:
            return {self.action_result: warning(str(exc))}
        if fid is None:
            return {self.action_result: if_none}
        try:
            done = await act(actor, fid)
        except StoreError as exc:
            return await self._after_action(actor, fid, warning(str(exc)), applied, stack)
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
                    expected_version=parse_id(version, "flag version"),
                )
                return f"✓ Flag #{fid} {PAST_TENSE[action]}."

            return await self._act_on_open_flag(request, flag_id, applied, stack, warning("open a flag first"), act)

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
