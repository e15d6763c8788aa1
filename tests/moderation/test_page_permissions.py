"""Every moderation and admin handler refuses a user without the role: in process, over HTTP through the
production mount, and over HTTP straight to the handlers (a mount that lets any signed-in user in).

Gradio events are HTTP endpoints, so hiding a page is not a check: these tests call each one directly.
"""

from __future__ import annotations

import inspect
from typing import Any

import gradio as gr
import pytest
from sqlalchemy import select
from starlette.requests import Request

from tests.support.moderation.gradio_events import SELECT_EVENT, event_indexes, run_event, sample_inputs
from tests.support.moderation.staff_server import StaffApp
from webapp.store import users
from webapp.store.accounts import ban_user
from webapp.store.engine import Database
from webapp.store.models import Flag, ModerationEvent, User
from webapp.store.permissions import ADMINS_ONLY, STAFF_ONLY, Operator
from webapp.ui.admin import ADMIN_HANDLERS, AdminPage, NotAdminError
from webapp.ui.moderation import MODERATION_HANDLERS, ModerationPage, NotStaffError
from webapp.ui.session import SignedOutError

PAGES = {"moderation": ("/moderation", MODERATION_HANDLERS), "admin": ("/admin", ADMIN_HANDLERS)}
REFUSALS = {"moderation": STAFF_ONLY, "admin": ADMINS_ONLY}
# (page, handler, who): plain users on both pages, moderators on the admin page.
CASES = [
    *[("moderation", h, "alice") for h in MODERATION_HANDLERS],
    *[("admin", h, "alice") for h in ADMIN_HANDLERS],
    *[("admin", h, "mod") for h in ADMIN_HANDLERS],
]


def snapshot(db: Database) -> tuple[Any, ...]:
    with db.read() as s:
        return (
            s.execute(select(Flag.id, Flag.status, Flag.version, Flag.assignee_id).order_by(Flag.id)).all(),
            s.execute(select(User.username, User.role, User.banned_at).order_by(User.id)).all(),
            s.execute(select(ModerationEvent.id).order_by(ModerationEvent.id)).all(),
        )


def test_the_registries_name_every_wired_handler(staff_app: StaffApp) -> None:
    for page, (_, handlers) in PAGES.items():
        _, demo = staff_app.unguarded[page]
        assert set(event_indexes(demo)) == set(handlers), page
        wired = {fn.fn.__name__ for fn in demo.fns.values() if fn.fn is not None}
        assert wired == set(handlers), page


@pytest.mark.parametrize(("page", "handler", "who"), CASES)
def test_refused_over_http(staff_app: StaffApp, page: str, handler: str, who: str) -> None:
    path, demo = staff_app.unguarded[page]  # the same page as production, so the same event numbers
    index = event_indexes(demo)[handler]
    data = sample_inputs(demo, index)
    before = snapshot(staff_app.app.ctx.db)
    with staff_app.client(who) as client:
        at_the_door = run_event(client, PAGES[page][0], index, data, SELECT_EVENT)
        in_the_handler = run_event(client, path, index, data, SELECT_EVENT)
    assert at_the_door.status == 401
    assert in_the_handler.status == 200 and not in_the_handler.success
    assert in_the_handler.error == REFUSALS[page]
    assert snapshot(staff_app.app.ctx.db) == before


def test_a_moderator_gets_past_both_checks(staff_app: StaffApp) -> None:
    """The refusals above are about the role: the same calls as a moderator run the handler."""
    path, demo = staff_app.unguarded["moderation"]
    index = event_indexes(demo)["open_flag"]
    with staff_app.client("mod") as client:
        for root in (path, "/moderation"):
            result = run_event(client, root, index, [str(staff_app.seeded.flags["a1"])])
            assert result.success, result.output
            assert "Flag #" in str(result.output["data"][0])


def _request(user: User | None) -> gr.Request:
    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    scope["session"] = {"uid": user.id} if user is not None else {}
    return gr.Request(request=Request(scope))


def _arguments(handler: Any, request: gr.Request) -> list[Any]:
    args: list[Any] = []
    for param in inspect.signature(handler).parameters.values():
        annotation = str(param.annotation)
        if "Request" in annotation:
            args.append(request)
        elif "SelectData" in annotation:
            args.append(gr.SelectData(None, SELECT_EVENT))
        else:
            args.append(None)
    return args


@pytest.fixture(scope="module")
def pages(staff_app: StaffApp) -> dict[str, ModerationPage | AdminPage]:
    built: dict[str, ModerationPage | AdminPage] = {
        "moderation": ModerationPage(staff_app.app.ctx),
        "admin": AdminPage(staff_app.app.ctx),
    }
    for page in built.values():
        page.build()
    return built


@pytest.mark.parametrize(("page", "handler"), [(p, h) for p, (_, handlers) in PAGES.items() for h in handlers])
async def test_signed_out_is_refused_in_process(
    staff_app: StaffApp, pages: dict[str, ModerationPage | AdminPage], page: str, handler: str
) -> None:
    fn = getattr(pages[page], handler)
    before = snapshot(staff_app.app.ctx.db)
    with pytest.raises(SignedOutError):
        await fn(*_arguments(fn, _request(None)))
    with pytest.raises(NotStaffError if page == "moderation" else NotAdminError):
        await fn(*_arguments(fn, _request(staff_app.seeded.alice)))
    assert snapshot(staff_app.app.ctx.db) == before


@pytest.mark.parametrize(
    ("who", "path", "status", "where"),
    [
        (None, "/moderation/", 303, "/login"),
        (None, "/admin/", 303, "/login"),
        ("alice", "/moderation/", 403, None),
        ("alice", "/admin/", 403, None),
        ("mod", "/admin/", 403, None),
        ("mod", "/moderation/", 200, None),
        ("root", "/admin/", 200, None),
        ("mod", "/moderation?flag=1", 307, "/moderation/?flag=1"),
        ("alice", "/moderation/export.csv", 403, None),
        (None, "/moderation/export.jsonl", 303, "/login"),
    ],
)
def test_pages_and_downloads(staff_app: StaffApp, who: str | None, path: str, status: int, where: str | None) -> None:
    with staff_app.client(who) as client:
        response = client.get(path, headers={"accept": "text/html"})
    assert response.status_code == status
    if where is not None:
        assert response.headers["location"] == where
    if status == 403:
        assert ("admins only" if path.startswith("/admin") else "moderators only") in response.text.lower()


def test_an_admin_creates_an_account_and_changes_its_role_over_http(staff_app: StaffApp) -> None:
    _, demo = staff_app.unguarded["admin"]
    events = event_indexes(demo)
    with staff_app.client("root") as client:
        created = run_event(
            client, "/admin", events["add_account"], ["trainee", "a-long-password", "user", "new hire", ""]
        )
        promoted = run_event(client, "/admin", events["change_role"], ["trainee", "moderator", "passed training", ""])
        own = run_event(client, "/admin", events["change_role"], ["root", "user", "", ""])
    assert created.success and promoted.success and own.success
    assert "Created trainee (user)" in str(created.output["data"])
    assert "cannot change your own role" in str(own.output["data"])
    with staff_app.app.ctx.db.read() as s:
        trainee = s.scalars(select(User).where(User.username == "trainee")).one()
        audit = s.execute(
            select(ModerationEvent.action, ModerationEvent.note, ModerationEvent.details)
            .where(ModerationEvent.target_user_id == trainee.id)
            .order_by(ModerationEvent.id)
        ).all()
    assert trainee.role == "moderator"
    assert [tuple(a) for a in audit] == [
        ("create_user", "new hire", {"role": "user"}),
        ("set_role", "passed training", {"from": "user", "to": "moderator"}),
    ]


def test_a_command_line_ban_shows_as_cli_in_the_audit_log_over_http(staff_app: StaffApp) -> None:
    with staff_app.app.ctx.db.write() as s:
        target = users.create_user(s, username="shell-banned", password="a-long-password")
        ban_user(s, actor=Operator.CLI, user_id=target.id, note="banned on the database host")
    _, demo = staff_app.unguarded["moderation"]
    index = event_indexes(demo)["search_audit"]
    with staff_app.client("mod") as client:
        result = run_event(client, "/moderation", index, ["cli", "ban", "", ""])
    assert result.success, result.output
    tables = [o["value"]["data"] for o in result.output["data"] if isinstance(o, dict) and "value" in o]
    rows = [row for table in tables if isinstance(table, list) for row in table]
    assert [(r[1], r[2], r[4], r[5]) for r in rows] == [("cli", "ban", "shell-banned", "banned on the database host")]
