"""`guardchat` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from webapp.settings import Settings, get_settings
from webapp.store import accounts, api_keys, users
from webapp.store.engine import Database, DatabaseURLError
from webapp.store.errors import StoreError
from webapp.store.permissions import Operator

Handler = Callable[[argparse.Namespace, Settings], int]


def _db(settings: Settings) -> Database:
    return Database(settings.resolved_database_url)


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.store.migrate import upgrade

    upgrade(settings.resolved_database_url)
    print(f"database is up to date: {settings.resolved_database_url}")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("repeat password: "):
        raise StoreError("the passwords do not match")
    return first


def cmd_users_add(args: argparse.Namespace, settings: Settings) -> int:
    password = _read_password(args)
    with _db(settings).write() as session:
        user = accounts.create_account(
            session, actor=Operator.CLI, username=args.name, password=password, role=args.role, note=args.note
        )
        print(f"created {user.role} {user.username!r} (id {user.id})")
    return 0


def cmd_users_list(args: argparse.Namespace, settings: Settings) -> int:
    with _db(settings).read() as session:
        for user in users.list_users(session):
            banned = f"  banned {user.banned_at:%Y-%m-%d}" if user.banned_at else ""
            print(f"{user.id:>5}  {user.username:<32} {user.role:<10}{banned}")
    return 0


# New accounts, role changes, bans and unbans go through the same audited store functions as the staff pages:
# the moderators' audit log shows them with "cli" as the actor.


def cmd_users_set_role(args: argparse.Namespace, settings: Settings) -> int:
    with _db(settings).write() as session:
        user = users.require_user_by_name(session, username=args.name)
        accounts.set_account_role(session, actor=Operator.CLI, user_id=user.id, role=args.role, note=args.note)
        print(f"{user.username} is now {user.role}")
    return 0


def cmd_users_ban(args: argparse.Namespace, settings: Settings) -> int:
    with _db(settings).write() as session:
        user = users.require_user_by_name(session, username=args.name)
        accounts.ban_user(session, actor=Operator.CLI, user_id=user.id, note=args.note)
        print(f"{user.username} is banned")
    return 0


def cmd_users_unban(args: argparse.Namespace, settings: Settings) -> int:
    with _db(settings).write() as session:
        user = users.require_user_by_name(session, username=args.name)
        accounts.unban_user(session, actor=Operator.CLI, user_id=user.id, note=args.note)
        print(f"{user.username} is no longer banned")
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    with _db(settings).write() as session:
        user = users.require_user_by_name(session, username=args.user)
        key, plaintext = api_keys.create_api_key(session, user=user, name=args.name)
    print(plaintext)
    print(f"API key {key.prefix}… for {args.user}: shown once, store it now.", file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    with _db(settings).read() as session:
        user = users.require_user_by_name(session, username=args.user)
        for key in api_keys.list_api_keys(session, user=user):
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            print(f"{key.prefix}…  {key.name:<20} {state}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    with _db(settings).write() as session:
        user = users.require_user_by_name(session, username=args.user)
        api_keys.revoke_api_key(session, user=user, prefix=args.prefix)
    print(f"revoked {args.prefix}")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.server import run_server

    run_server(settings, host=args.host, port=args.port, local_model=args.local_model, workers=args.workers)
    return 0


def cmd_model_serve(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.llm.local_server import serve

    serve(
        settings,
        models=args.models or None,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        synthetic_ttft_ms=args.synthetic_ttft_ms,
        synthetic_itl_ms=args.synthetic_itl_ms,
    )
    return 0


def cmd_rails_train(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.guard.training import Kind, train

    kinds: tuple[Kind, ...] = (args.only,) if args.only else ("request", "reply")
    summary = train(settings.rails_dir / "eval", settings.rails_dir / "models", kinds=kinds)
    for name, record in summary.items():
        print(f"{name}: {json.dumps(record, sort_keys=True)}")
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from webapp.guard.evaluation import format_report, run_eval

    report = run_eval([Path(p) for p in args.files], settings, full_turn=not args.input_only)
    print(format_report(report))
    return 0


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        since = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--since {value!r} is not a date (YYYY-MM-DD or an ISO timestamp)") from None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


def cmd_eval_export_moderation(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from webapp.moderation.cases import export_cases

    since = _since(args.since)
    with _db(settings).read() as session:
        summary = export_cases(session, Path(args.file), since=since, redact_contacts=args.redact_contacts)
    print(f"{summary.written} resolved flags written to {args.file} ({summary.skipped} without their text)")
    return 0


def cmd_eval_replay(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from webapp.guard.turn import TurnGuard
    from webapp.moderation.replay import format_report, replay, replay_settings, stored_turns

    if args.limit < 1:
        raise ValueError("--limit must be at least 1")
    with _db(settings).read() as session:
        turns = stored_turns(
            session, since=_since(args.since), limit=args.limit, window_turns=settings.input_window_turns
        )
    print(f"replaying {len(turns)} stored turns through today's rails (no model calls)", file=sys.stderr)
    guard = TurnGuard.load(replay_settings(settings))

    def progress(done: int, total: int) -> None:
        if done == total or done % 50 == 0:
            width = 30
            bar = "#" * (width * done // total)
            print(f"\r[{bar:<{width}}] {done}/{total}", end="\n" if done == total else "", file=sys.stderr)

    report = asyncio.run(replay(guard, turns, progress=progress))
    print(format_report(report, self_check_was_on=settings.self_check_enabled))
    return 0


def build_export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guardchat eval export-moderation",
        description="Write moderators' resolved flags as eval cases (JSONL, rails/eval's format). Usernames are "
        "never written.",
    )
    parser.add_argument("file", help="the JSONL file to write")
    parser.add_argument("--since", help="only flags resolved at or after this date (YYYY-MM-DD, UTC)")
    parser.add_argument(
        "--redact-contacts", action="store_true", help="replace e-mail addresses and phone numbers in the text"
    )
    parser.set_defaults(handler=cmd_eval_export_moderation)
    return parser


def build_replay_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guardchat eval replay",
        description="Run today's rails over stored turns (no model calls) and report where their decision "
        "differs from the recorded one, by rail and by moderators' verdicts.",
    )
    parser.add_argument("--since", help="only turns from this date on (YYYY-MM-DD, UTC)")
    parser.add_argument("--limit", type=int, default=10_000, help="at most this many turns, oldest first")
    parser.set_defaults(handler=cmd_eval_replay)
    return parser


# `guardchat eval FILE...` takes files, so its own commands are parsed on their own (see main).
EVAL_COMMANDS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "export-moderation": build_export_parser,
    "replay": build_replay_parser,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guardchat", description="GuardChat: guarded chat on Triton.")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database commands").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(handler=cmd_db_upgrade)

    us = sub.add_parser("users", help="manage accounts").add_subparsers(dest="users_command", required=True)
    add = us.add_parser("add", help="create an account")
    add.add_argument("name")
    add.add_argument("--role", default="user", help="user, moderator or admin")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--note", default="", help="kept in the moderators' audit log")
    add.set_defaults(handler=cmd_users_add)
    us.add_parser("list", help="list accounts").set_defaults(handler=cmd_users_list)
    role = us.add_parser("set-role", help="change an account's role")
    role.add_argument("name")
    role.add_argument("role")
    role.add_argument("--note", default="", help="kept in the moderators' audit log")
    role.set_defaults(handler=cmd_users_set_role)
    for name, handler in (("ban", cmd_users_ban), ("unban", cmd_users_unban)):
        p = us.add_parser(name, help=f"{name} an account")
        p.add_argument("name")
        p.add_argument("--note", default="", help="kept in the moderators' audit log")
        p.set_defaults(handler=handler)

    ks = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    kc = ks.add_parser("create", help="create an API key (printed once)")
    kc.add_argument("user")
    kc.add_argument("--name", default="", help="a label for the key")
    kc.set_defaults(handler=cmd_keys_create)
    kl = ks.add_parser("list", help="list a user's keys")
    kl.add_argument("user")
    kl.set_defaults(handler=cmd_keys_list)
    kr = ks.add_parser("revoke", help="revoke a key by its prefix")
    kr.add_argument("user")
    kr.add_argument("prefix")
    kr.set_defaults(handler=cmd_keys_revoke)

    serve = sub.add_parser("serve", help="run the web app")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument(
        "--local-model",
        choices=["auto", "yes", "no"],
        default="no",
        help="start the local Triton model server too (auto: unless GUARDCHAT_TRITON_URL is set)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="app processes (PostgreSQL only): N > 1 starts N on 127.0.0.1 behind an nginx on --host/--port, "
        "with sticky sessions for the pages (needs nginx: `make nginx`)",
    )
    serve.set_defaults(handler=cmd_serve)

    model = sub.add_parser("model", help="local model server").add_subparsers(dest="model_command", required=True)
    ms = model.add_parser("serve", help="run a local Triton server with SmolLM2 and the synthetic model")
    ms.add_argument("--models", nargs="*", help="models to serve (default: all production models)")
    ms.add_argument("--http-port", type=int, default=None)
    ms.add_argument("--grpc-port", type=int, default=None)
    ms.add_argument("--synthetic-ttft-ms", type=float, default=300.0)
    ms.add_argument("--synthetic-itl-ms", type=float, default=25.0)
    ms.set_defaults(handler=cmd_model_serve)

    rl = sub.add_parser("rails", help="the learned rails").add_subparsers(dest="rails_command", required=True)
    tr = rl.add_parser(
        "train", help="fit the learned rails on rails/eval (train split) and write rails/models and rails/eval/split"
    )
    tr.add_argument(
        "--only", choices=("request", "reply"), help="refit only these heads; the others' files stay as they are"
    )
    tr.set_defaults(handler=cmd_rails_train)

    ev = sub.add_parser(
        "eval",
        help="run JSONL prompt files through the rails (also `guardchat eval export-moderation FILE`: one from "
        "moderators' verdicts; `guardchat eval replay`: today's rails over stored turns)",
    )
    ev.add_argument("files", nargs="+", help='JSONL files of {"text": ..., "should_refuse": true|false}')
    ev.add_argument("--input-only", action="store_true", help="run the input rails only (no model calls)")
    ev.set_defaults(handler=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import os

    os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    own = EVAL_COMMANDS.get(argv[1]) if len(argv) > 1 and argv[0] == "eval" else None
    args = own().parse_args(argv[2:]) if own else build_parser().parse_args(argv)
    try:
        settings = get_settings()
        handler: Handler = args.handler
        return handler(args, settings)
    except (StoreError, DatabaseURLError, ValueError) as exc:
        print(f"guardchat: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
