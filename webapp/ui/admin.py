"""The admin page at /admin: list accounts, create them, change roles, ban and unban. Admins only.

Like every page, each Gradio handler re-reads the user from the session and checks the role itself;
the account service checks it again. ``ADMIN_HANDLERS`` names every handler wired to an event.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import gradio as gr
from gradio.blocks import Block

from webapp.context import AppContext
from webapp.services.accounts import ADMINS_ONLY, ROLES, AccountRow, User
from webapp.services.errors import StoreError
from webapp.ui.moderation.render import when
from webapp.ui.rendering import safe_markdown
from webapp.ui.session import acting_user

ADMIN_PATH = "/admin"
ADMIN_HANDLERS: tuple[str, ...] = (
    "load_admin",
    "search_accounts",
    "pick_account",
    "add_account",
    "change_role",
    "ban_account",
    "unban_account",
)
ACCOUNT_HEADERS = ["ID", "Username", "Role", "Created (UTC)", "Banned since", "Flags", "Confirmed"]

Updates = dict[Block, Any]


class NotAdminError(gr.Error):
    def __init__(self) -> None:
        super().__init__(ADMINS_ONLY, title="Not allowed")


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _rows(accounts: list[AccountRow]) -> list[list[Any]]:
    return [[a.id, a.username, a.role, when(a.created_at), when(a.banned_at), a.flags, a.confirmed] for a in accounts]


class AdminPage:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def _admin(self, request: gr.Request | None) -> User:
        user = await acting_user(self.ctx, request)
        if user.role != "admin":
            raise NotAdminError()
        return user

    async def _listing(self, actor: User, query: str) -> Updates:
        accounts = await self.ctx.accounts.find(actor, query=query)
        return {self.accounts: gr.update(value=_rows(accounts))}

    async def _change(
        self, actor: User, query: Any, done: str, change: Awaitable[None], extra: Updates | None = None
    ) -> Updates:
        """Await one audited change; its outcome (or the refusal) shows under the forms."""
        try:
            await change
        except StoreError as exc:
            return {self.result: f"⚠ {safe_markdown(str(exc))}"}
        updates = await self._listing(actor, _text(query))
        updates[self.result] = f"✓ {done}"
        updates[self.note] = ""
        updates.update(extra or {})
        return updates

    # --- handlers ---------------------------------------------------------------------------------------

    async def load_admin(self, request: gr.Request) -> Updates:
        actor = await self._admin(request)
        updates = await self._listing(actor, "")
        updates[self.account] = (
            f"**{safe_markdown(actor.username)}** (admin) · [Moderation](/moderation) · [Chat](/) · [Sign out](/logout)"
        )
        return updates

    async def search_accounts(self, query: Any, request: gr.Request) -> Updates:
        actor = await self._admin(request)
        return await self._listing(actor, _text(query)[:64])

    async def pick_account(self, selected: gr.SelectData, request: gr.Request) -> Updates:
        await self._admin(request)
        row = selected.row_value if isinstance(selected.row_value, list | tuple) else None
        if not row or len(row) < 3:
            return {self.username: gr.update()}
        role = row[2] if row[2] in ROLES else "user"
        return {self.username: str(row[1]), self.role: role}

    async def add_account(
        self, username: Any, password: Any, role: Any, note: Any, query: Any, request: gr.Request
    ) -> Updates:
        actor = await self._admin(request)
        name, chosen = _text(username), _text(role) or "user"

        create = self.ctx.accounts.create(
            actor,
            username=name,
            password=password if isinstance(password, str) else "",
            role=chosen,
            note=_text(note),
        )
        done = f"Created {safe_markdown(name)} ({chosen})."
        return await self._change(actor, query, done, create, extra={self.new_password: ""})

    async def change_role(self, username: Any, role: Any, note: Any, query: Any, request: gr.Request) -> Updates:
        actor = await self._admin(request)
        name, chosen = _text(username), _text(role)

        change = self.ctx.accounts.set_role(actor, username=name, role=chosen, note=_text(note))
        return await self._change(actor, query, f"{safe_markdown(name)} is now a {safe_markdown(chosen)}.", change)

    async def ban_account(self, username: Any, note: Any, query: Any, request: gr.Request) -> Updates:
        actor = await self._admin(request)
        name = _text(username)

        ban = self.ctx.accounts.ban(actor, username=name, note=_text(note))
        return await self._change(actor, query, f"{safe_markdown(name)} is banned.", ban)

    async def unban_account(self, username: Any, note: Any, query: Any, request: gr.Request) -> Updates:
        actor = await self._admin(request)
        name = _text(username)

        unban = self.ctx.accounts.unban(actor, username=name, note=_text(note))
        return await self._change(actor, query, f"{safe_markdown(name)} is unbanned.", unban)

    # --- layout and wiring ------------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        with gr.Blocks(title="Accounts · GuardChat", fill_width=True) as demo:
            with gr.Row(elem_id="gc-mod-header"):
                gr.Markdown("# GuardChat accounts")
                self.account = gr.Markdown(elem_id="gc-mod-account")
            with gr.Row():
                with gr.Column(scale=3):
                    with gr.Row():
                        self.query = gr.Textbox(
                            label="Find accounts",
                            placeholder="part of a username",
                            max_lines=1,
                            scale=3,
                            elem_id="gc-admin-query",
                        )
                        self.search = gr.Button(
                            "Search", scale=0, min_width=100, elem_classes="gc-inline", elem_id="gc-admin-search"
                        )
                    self.accounts = gr.Dataframe(
                        headers=ACCOUNT_HEADERS,
                        type="array",
                        interactive=False,
                        show_label=False,
                        max_height=600,
                        elem_id="gc-admin-accounts",
                    )
                    gr.Markdown("Click an account to fill in the forms. Every change lands in the audit log.")
                with gr.Column(scale=2, min_width=300):
                    with gr.Group():
                        self.username = gr.Textbox(label="Username", max_lines=1, elem_id="gc-admin-username")
                        self.role = gr.Dropdown(list(ROLES), value="user", label="Role", elem_id="gc-admin-role")
                        self.note = gr.Textbox(
                            label="Note (kept in the audit log)", max_lines=2, elem_id="gc-admin-note"
                        )
                    with gr.Row():
                        self.role_button = gr.Button("Change role", variant="primary", elem_id="gc-admin-set-role")
                        self.ban_button = gr.Button("Ban", variant="stop", elem_id="gc-admin-ban")
                        self.unban_button = gr.Button("Unban", elem_id="gc-admin-unban")
                    with gr.Accordion("Create an account", open=False):
                        self.new_password = gr.Textbox(
                            label="Initial password (8+ characters)", type="password", elem_id="gc-admin-password"
                        )
                        self.create_button = gr.Button(
                            "Create with the username and role above", elem_id="gc-admin-create"
                        )
                    self.result = gr.Markdown(elem_id="gc-admin-result")
            self._wire(demo)
        return demo

    def _wire(self, demo: gr.Blocks) -> None:
        common: dict[str, Any] = {"api_visibility": "undocumented"}

        def wire(trigger: Any, name: str, **kwargs: Any) -> Any:
            assert name in ADMIN_HANDLERS, name
            if isinstance(trigger, list):
                return gr.on(trigger, getattr(self, name), api_name=name, **common, **kwargs)
            return trigger(getattr(self, name), api_name=name, **common, **kwargs)

        changed = [self.accounts, self.result, self.note]
        wire(demo.load, "load_admin", outputs=[self.accounts, self.account])
        wire([self.search.click, self.query.submit], "search_accounts", inputs=[self.query], outputs=[self.accounts])
        wire(self.accounts.select, "pick_account", outputs=[self.username, self.role])
        wire(
            self.create_button.click,
            "add_account",
            inputs=[self.username, self.new_password, self.role, self.note, self.query],
            outputs=[*changed, self.new_password],
        )
        wire(
            self.role_button.click,
            "change_role",
            inputs=[self.username, self.role, self.note, self.query],
            outputs=changed,
        )
        wire(self.ban_button.click, "ban_account", inputs=[self.username, self.note, self.query], outputs=changed)
        wire(self.unban_button.click, "unban_account", inputs=[self.username, self.note, self.query], outputs=changed)


def build_admin_page(ctx: AppContext) -> gr.Blocks:
    return AdminPage(ctx).build()
