from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from webapp.cli import main
from webapp.settings import reset_settings_cache
from webapp.store import api_keys, users
from webapp.store.audit import AuditFilter, list_audit
from webapp.store.engine import Database


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_manages_accounts_and_keys(
    isolated_data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(monkeypatch, capsys, "db", "upgrade")[0] == 0
    assert (isolated_data_dir / "guardchat.db").exists()

    code, out, _ = run(
        monkeypatch, capsys, "users", "add", "mod1", "--role", "moderator", "--password-stdin", stdin="s3cret-pass\n"
    )
    assert code == 0 and "created moderator 'mod1'" in out
    assert run(monkeypatch, capsys, "users", "set-role", "mod1", "admin")[0] == 0
    assert run(monkeypatch, capsys, "users", "ban", "mod1")[0] == 0
    code, out, _ = run(monkeypatch, capsys, "users", "list")
    assert "mod1" in out and "admin" in out and "banned" in out
    assert run(monkeypatch, capsys, "users", "unban", "mod1")[0] == 0

    code, out, _ = run(monkeypatch, capsys, "keys", "create", "mod1")
    plaintext = out.strip()
    assert code == 0 and plaintext.startswith("gc-")
    db = Database(f"sqlite:///{isolated_data_dir / 'guardchat.db'}")
    try:
        with db.read() as s:
            key = api_keys.resolve_api_key(s, plaintext=plaintext)
            assert key is not None and key.key_hash != plaintext
            assert users.authenticate(s, username="mod1", password="s3cret-pass") is not None
        assert run(monkeypatch, capsys, "keys", "revoke", "mod1", key.prefix)[0] == 0
        with db.read() as s:
            assert api_keys.resolve_api_key(s, plaintext=plaintext) is None
    finally:
        db.dispose()


def test_cli_new_accounts_bans_unbans_and_role_changes_are_in_the_audit_log_as_cli(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GUARDCHAT_DATABASE_URL", db_url)
    reset_settings_cache()
    assert run(monkeypatch, capsys, "db", "upgrade")[0] == 0
    for name, role, note in (("mod", "moderator", ""), ("alice", "user", "asked by phone")):
        code, _, _ = run(
            monkeypatch,
            capsys,
            "users",
            "add",
            name,
            "--role",
            role,
            "--note",
            note,
            "--password-stdin",
            stdin="pw123456\n",
        )
        assert code == 0

    assert run(monkeypatch, capsys, "users", "ban", "alice", "--note", "spam from the shell")[0] == 0
    code, _, err = run(monkeypatch, capsys, "users", "ban", "alice")
    assert code == 2 and "alice is already banned (by cli)" in err
    assert run(monkeypatch, capsys, "users", "unban", "alice")[0] == 0
    assert run(monkeypatch, capsys, "users", "set-role", "alice", "moderator", "--note", "passed training")[0] == 0

    db = Database(db_url)
    try:
        with db.read() as s:
            moderator = users.require_user_by_name(s, username="mod")
            everything = list_audit(s, actor=moderator).entries
            by_cli = list_audit(s, actor=moderator, filters=AuditFilter(moderator="cli")).entries
            by_mod = list_audit(s, actor=moderator, filters=AuditFilter(moderator="mod")).entries
    finally:
        db.dispose()
    logged = [(e.actor, e.action, e.target_user, e.note, e.details) for e in everything]
    assert logged == [
        ("cli", "set_role", "alice", "passed training", {"from": "user", "to": "moderator"}),
        ("cli", "unban", "alice", "", {}),
        ("cli", "ban", "alice", "spam from the shell", {}),
        ("cli", "create_user", "alice", "asked by phone", {"role": "user"}),
        ("cli", "create_user", "mod", "", {"role": "moderator"}),
    ]
    assert by_cli == everything
    assert by_mod == []


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (("users", "add", "x1", "--role", "root", "--password-stdin"), "password123\n", "unknown role 'root'"),
        (("users", "add", "y" * 70, "--password-stdin"), "password123\n", "the limit is 64"),
        (("users", "ban", "ghost"), "", "no user named 'ghost'"),
    ],
)
def test_cli_bad_input_names_the_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], stdin: str, message: str
) -> None:
    run(monkeypatch, capsys, "db", "upgrade")
    code, _, err = run(monkeypatch, capsys, *argv, stdin=stdin)
    assert code == 2
    assert message in err


def test_cli_duplicate_user(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run(monkeypatch, capsys, "db", "upgrade")
    run(monkeypatch, capsys, "users", "add", "zed", "--password-stdin", stdin="password123\n")
    code, _, err = run(monkeypatch, capsys, "users", "add", "ZED", "--password-stdin", stdin="password123\n")
    assert code == 2 and "already taken" in err


def test_cli_malformed_database_url(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GUARDCHAT_DATABASE_URL", "postgres//oops")
    code, _, err = run(monkeypatch, capsys, "db", "upgrade")
    assert code == 2 and "is not a URL" in err
